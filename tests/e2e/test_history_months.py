"""Months long before the DAG was written, and the month under way, through the CLI and the real DAG.

A generated source whose data lie in 1997-1998 (`tiering demo-data --start 1997-01`) is run and
backfilled with `tiering run` / `tiering backfill` (in this process, so Airflow loads once); the
results are read from the warehouse tables and from Airflow's own record of the DAG runs (the data
interval the UI shows). Then the current month, which has not ended, is refused and run as
provisional.
"""
from __future__ import annotations

import io
import re
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.fixtures.warehouse import query as _rows
from tiering import cli
from tiering.settings import DAG_ID
from tiering.steps import STEPS

pytestmark = pytest.mark.e2e

HISTORY = [date(1997, 11, 1), date(1997, 12, 1), date(1998, 2, 1)]


def _cli(*argv) -> tuple[int, str, str]:
    """`tiering ARGV` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _dag_runs(months: list[date]) -> dict[date, dict]:
    """Airflow's record of the DAG runs that computed these months: interval, logical date, tasks."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    found = {}
    with create_session() as session:
        for run in session.query(DagRun).filter(DagRun.dag_id == DAG_ID).all():
            month = (run.conf or {}).get("month")
            if month and date.fromisoformat(f"{month}-01") in months:
                states = dict(session.query(TaskInstance.task_id, TaskInstance.state).filter(
                    TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run.run_id).all())
                found[date.fromisoformat(f"{month}-01")] = {
                    "interval": (run.data_interval_start, run.data_interval_end), "logical_date": run.logical_date,
                    "tasks": {k: str(getattr(v, "value", v)) for k, v in states.items()}}
    return found


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    source, warehouse = root / "source-1997", root / "warehouse" / "tiering.duckdb"
    code, out, err = _cli("demo-data", "--out", source, "--customers", "80", "--months", "14",
                          "--start", "1997-01", "--seed", "11")
    assert code == 0, err
    results = {
        "backfill": _cli("backfill", "--source", source, "--start", "1997-11", "--end", "1997-12",
                         "--warehouse", warehouse),
        "run": _cli("run", "--source", source, "--month", "1998-02", "--warehouse", warehouse),
    }
    return source, warehouse, results


def test_months_of_1997_and_1998_run_and_backfill(history):
    _, warehouse, results = history
    for name, (code, out, err) in results.items():
        assert code == 0, (name, err, out[-2000:])
    runs = _rows(warehouse, "select month, status from audit.runs order by month")
    assert runs == [(m, "success") for m in HISTORY]
    per_month = _rows(warehouse, """select month, count(*), count(distinct final_tier), sum(net_revenue) > 0,
                                           bool_or(is_provisional)
                                    from marts.customer_tier_monthly group by month order by month""")
    assert [r[0] for r in per_month] == HISTORY
    for month, customers, tiers, revenue, provisional in per_month:
        assert customers > 40 and tiers >= 3 and revenue and provisional is False, month
    summary = _rows(warehouse, "select month, sum(revenue_share), bool_or(is_provisional) "
                               "from marts.tier_summary_monthly group by month order by month")
    assert [(m, round(s, 6), p) for m, s, p in summary] == [(m, 1.0, False) for m in HISTORY]
    # bad rows of those years are quarantined by the months' own runs, with a reason
    rejected = _rows(warehouse, """select count(*), count(reason), count(distinct run_id) filter (
                                       where run_id not in (select run_id from audit.runs))
                                   from quarantine.rejected_rows""")[0]
    assert rejected[0] > 0 and rejected[0] == rejected[1] and rejected[2] == 0


def test_each_dag_run_computed_the_month_of_its_data_interval(history):
    runs = _dag_runs(HISTORY)
    assert sorted(runs) == HISTORY
    for month, run in runs.items():
        start, end = run["interval"]
        after = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        assert (start.date(), end.date()) == (month, after), month
        assert run["logical_date"].date() == after  # a manual run's logical date ends its interval
        assert len(run["tasks"]) == 1 + len(STEPS) and set(run["tasks"].values()) == {"success"}, run["tasks"]


def test_impossible_months_are_one_line_errors(history):
    source, warehouse, _ = history
    for month in ("0000-01", "9999-12", "1899-12"):
        code, out, err = _cli("run", "--source", source, "--month", month, "--warehouse", warehouse)
        assert code == 1
        assert err == (f"tiering: error: month {month} is out of range: months from 1900-01 up to the current "
                       f"month ({datetime.now(UTC):%Y-%m}) can be run\n")


def test_the_current_month_is_refused_unless_provisional(history):
    source, warehouse, _ = history
    now = datetime.now(UTC)
    month = f"{now:%Y-%m}"
    code, out, err = _cli("run", "--source", source, "--month", month, "--warehouse", warehouse)
    assert code == 1 and err.count("\n") == 1
    assert f"month {month} has not ended yet" in err and "--provisional" in err
    code, out, err = _cli("backfill", "--source", source, "--start", "1998-01", "--end", month,
                          "--warehouse", warehouse)
    assert code == 1 and f"month {month} has not ended yet" in err
    assert _rows(warehouse, "select count(*) from audit.runs where month >= date '1998-01-01' "
                            "and month < date '1998-02-01'") == [(0,)]  # refused before any month ran

    code, out, err = _cli("run", "--source", source, "--month", month, "--provisional",
                          "--warehouse", warehouse)
    assert code == 0, (err, out[-2000:])
    this_month = date(now.year, now.month, 1)
    for table in ("customer_tier_monthly", "customer_credit_monthly", "tier_summary_monthly"):
        flags = _rows(warehouse, f"select month, bool_and(is_provisional), bool_or(is_provisional) "
                                 f"from marts.{table} group by month order by month")
        assert flags == [(m, False, False) for m in HISTORY] + [(this_month, True, True)], table
    assert "is computed as provisional" in err        # a warning the user sees (tiering.console.warn_user)
    log_file = re.search(r"log (\S+\.log)", out).group(1)
    log_text = Path(log_file).read_text()
    assert "publish_postgres skipped: " in log_text and "provisional run" in log_text

    customer = _rows(warehouse, "select min(customer_id) from marts.customer_tier_monthly where month = ?",
                     [this_month])[0][0]
    code, out, err = _cli("explain", "--customer", customer, "--month", month,
                          "--warehouse", warehouse)
    assert code == 0 and f"PROVISIONAL: {month} had not ended when it was computed" in out
    code, out, err = _cli("explain", "--customer", customer, "--month", "1998-02",
                          "--warehouse", warehouse)
    assert code == 0 and "PROVISIONAL" not in out

    report = warehouse.parent / "report.html"
    code, out, err = _cli("report", "--month", month, "--out", report, "--warehouse", warehouse)
    assert code == 0, err
    assert 'id="provisional"' in report.read_text()
    code, out, err = _cli("report", "--month", "1998-02", "--out", report, "--warehouse", warehouse)
    assert code == 0 and 'id="provisional"' not in report.read_text()
