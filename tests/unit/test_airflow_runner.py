"""What `tiering run` asks Airflow for, and how a DAG run that ran no task is reported."""
from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

from tiering.airflow_runner import logical_date_of, no_task_reason
from tiering.runspec import RunSpec


def test_the_logical_date_gives_the_interval_of_the_month():
    """dag.test(logical_date=M+1) makes the data interval [M, M+1) (CronDataIntervalTimetable's
    infer_manual_data_interval), which is what the run computes."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    for month in (date(1900, 1, 1), date(1997, 12, 1), date(2025, 1, 1)):
        spec = RunSpec(month=month, run_id="r", source_dir=Path("."))
        logical = logical_date_of(spec)
        interval = CronDataIntervalTimetable("0 0 1 * *", timezone="UTC").infer_manual_data_interval(
            run_after=logical)
        assert interval.start == datetime(month.year, month.month, 1, tzinfo=UTC)
        assert interval.end == logical == datetime(spec.next_month.year, spec.next_month.month, 1, tzinfo=UTC)


def test_a_run_before_the_start_date_is_reported_with_the_reason():
    dag = SimpleNamespace(start_date=datetime(2024, 1, 1, tzinfo=UTC))
    run = SimpleNamespace(logical_date=datetime(2023, 12, 1, tzinfo=UTC), run_id="manual__x",
                          state="success")
    assert no_task_reason(dag, run, {}) == ("its logical date 2023-12-01 is before the DAG's start_date 2024-01-01, "
                                            "so Airflow created no task instance")
    dag.start_date = datetime(1900, 1, 1, tzinfo=UTC)
    assert "created no task instance for DAG run manual__x" in no_task_reason(dag, run, {})
    assert no_task_reason(dag, run, {"start_run": "removed"}) == "its tasks stayed removed in DAG run manual__x"
