"""The DAG file imports cleanly, is configured as documented, and stays light to parse."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from tiering.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["customer_tiering_monthly"]


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dag_ids) == ["customer_tiering_monthly"]


def test_schedule_tags_retries_catchup(dag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.summary == "0 0 1 * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert {"tiering", "dbt", "monthly"} <= set(dag.tags)
    assert dag.doc_md and "customer_tiering_monthly" in dag.doc_md


def test_any_month_from_1900_can_run(dag):
    """A run before start_date would create no task instance: the DAG starts in 1900, catchup off."""
    assert dag.start_date == datetime(1900, 1, 1, tzinfo=UTC)
    assert "data interval" in dag.doc_md and "1900-01" in dag.doc_md
    for task in dag.tasks:
        assert task.retries == 2, task.task_id
        assert task.on_failure_callback, task.task_id


def test_task_order(dag):
    steps = ["start_run", "extract_and_land", "gate_landed", "transform_staging",
             "gate_staging", "score_potential", "transform_marts", "gate_marts", "publish",
             "publish_postgres", "finish_run"]
    assert sorted(dag.task_ids) == sorted(steps)
    for before, after in pairwise(steps):
        assert before in dag.get_task(after).upstream_task_ids, (before, after)


def test_a_month_is_computed_after_it_ends(dag):
    """The run for March 2024 has the data interval [March 1, April 1) and starts on April 1."""
    from airflow.timetables.base import DataInterval

    march = DataInterval(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(datetime(2024, 2, 1, tzinfo=UTC),
                                                  datetime(2024, 3, 1, tzinfo=UTC)),
        restriction=_restriction(catchup=True),
    )
    assert info.data_interval == march
    assert info.logical_date == march.start          # a scheduled run: logical date = interval start
    assert info.run_after == march.end               # triggered once the month is over


def test_without_catchup_the_next_run_computes_the_last_complete_month(dag):
    now = datetime.now(UTC)
    this_month = datetime(now.year, now.month, 1, tzinfo=UTC)
    last_month = datetime(now.year - (now.month == 1), (now.month - 2) % 12 + 1, 1, tzinfo=UTC)
    info = dag.timetable.next_dagrun_info(last_automated_data_interval=None,
                                          restriction=_restriction(catchup=False))
    assert (info.data_interval.start, info.data_interval.end) == (last_month, this_month)


def _restriction(catchup: bool):
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=datetime(2024, 1, 1, tzinfo=UTC), latest=None, catchup=catchup)


def test_dag_import_does_not_touch_the_warehouse_or_dbt():
    """Importing the DAG file must not import duckdb, dbt, pandas or great_expectations."""
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('duckdb', 'dbt.cli.main', 'great_expectations', 'pyarrow') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, str(PROJECT_ROOT / "dags" / "customer_tiering_monthly.py")],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1:] in ([], [""]), proc.stdout
    print(f"DAG file import in a fresh interpreter: {time.monotonic() - started:.2f} s (incl. airflow import)")


def test_publish_postgres_declares_the_published_tiers_asset(dag):
    """Downstream BI refresh DAGs can be scheduled on the published tier tables."""
    outlets = dag.get_task("publish_postgres").outlets
    assert [(a.uri, a.group) for a in outlets] == [("tiering://marts/customer_tier_monthly", "tiering")]
    assert all(not dag.get_task(t).outlets for t in dag.task_ids if t != "publish_postgres")
