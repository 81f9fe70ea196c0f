"""`tiering backfill` through the real DAG, off a terminal: plain lines, the log file, a failure at the
third month, and the same command again resuming there. All in this one process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.warehouse import query as _rows
from tiering.cli import main
from tiering.errors import QualityGateError

pytestmark = pytest.mark.e2e

FAILING_MONTH = "2024-03"


@pytest.fixture(scope="module")
def backfilled(demo_source, tmp_path_factory):
    """The backfill failing at its third month (its landed gate stops it, as bad data would), then the
    same command once the cause is gone. February's gate also warns the user (tiering.console.warn_user,
    as a provisional month or a restatement would), from inside its Airflow task."""
    from tiering import pipeline
    from tiering.console import warn_user

    warehouse = tmp_path_factory.mktemp("cli-backfill") / "tiering.duckdb"
    real_gate = pipeline.gate_landed

    def gate_failing_in_march(run: dict) -> dict:
        if run["month"] == FAILING_MONTH:
            raise QualityGateError(f"quality gate 'landed' failed for {FAILING_MONTH}: injected by the test")
        if run["month"] == "2024-02":
            warn_user("2024-02: a warning the user must see")
        return real_gate(run)

    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "gate_landed", gate_failing_in_march)
        results["failed"] = _run_captured(demo_source, warehouse)
    results["resumed"] = _run_captured(demo_source, warehouse)
    return warehouse, results


def _run_captured(source: Path, warehouse: Path) -> tuple[int, list[str], list[str]]:
    """main() with stdout and stderr not a terminal (as in CI or a pipe); capsys is per test, this per module."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["backfill", "--source", str(source), "--start", "2024-01", "--end", FAILING_MONTH,
                     "--warehouse", str(warehouse)])
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


def _log_of(lines: list[str]) -> Path:
    return Path(lines[0].rsplit("; log ", 1)[1])


def test_a_failed_backfill_prints_plain_lines_and_ends_with_the_reason(backfilled):
    warehouse, results = backfilled
    code, out, err = results["failed"]
    assert code == 1
    assert out[0].startswith("rules default-") and out[0].endswith(f"; warehouse {warehouse}; log {_log_of(out)}")
    assert [line.split(" run ")[0] if line.endswith(" started") else line.split("  ")[0] for line in out[1:]] == [
        "[1/3] 2024-01", "[1/3] 2024-01", "[2/3] 2024-02", "[2/3] 2024-02", "[3/3] 2024-03"]
    assert "A: " in out[2] and "; quarantined rows: " in out[2]
    assert err == ["warning: 2024-02: a warning the user must see", f"log: {_log_of(out)}",
                   f"tiering: error: gate_landed: quality gate 'landed' failed for {FAILING_MONTH}: "
                   f"injected by the test"]


def test_the_log_file_holds_dbt_ge_and_airflow_output(backfilled):
    warehouse, results = backfilled
    out = results["failed"][1]
    log_path = _log_of(out)
    assert log_path.parent == warehouse.parent / "logs"
    log = log_path.read_text()
    assert "Running with dbt=" in log and "OK created sql table model marts_pending.tier_policy" in log   # dbt's runner
    assert "INFO tiering.quality: quality gate landed for 2024-01" in log                        # GE gates
    assert "INFO tiering.pipeline: change log " in log                                           # the pipeline
    assert "WARNING tiering.user: 2024-02: a warning the user must see" in log
    for step in ("start_run", "transform_marts", "finish_run"):
        assert f"--- 2024-02 {step}" in log
    assert "\x1b[" not in log                                                                    # no colour codes
    assert "Calculating Metrics" not in log                                                      # GE progress bars off
    assert not any("Running with dbt" in line for line in out)


def test_the_same_command_resumes_at_the_failed_month(backfilled):
    warehouse, results = backfilled
    code, out, err = results["resumed"]
    assert code == 0 and err == []
    first = _rows(warehouse, "select month, run_id from audit.runs where status = 'success' and month < ? "
                             "order by month", ["2024-03-01"])
    assert [line for line in out if "skipped" in line] == [
        f"[1/3] 2024-01 skipped: unchanged since run {first[0][1]} (--force reruns it)",
        f"[2/3] 2024-02 skipped: unchanged since run {first[1][1]} (--force reruns it)"]
    assert out[-2].startswith("[3/3] 2024-03  A: ") and out[-1].startswith("done: 1 of 3 month(s) run in ")
    states = _rows(warehouse, "select month, status, count(*) from audit.runs group by all order by all")
    assert [(f"{m:%Y-%m}", s, n) for m, s, n in states] == [
        ("2024-01", "success", 1), ("2024-02", "success", 1), ("2024-03", "failed", 1), ("2024-03", "success", 1)]
    fingerprints = _rows(warehouse, "select count(distinct source_fingerprint) from audit.runs "
                                    "where status = 'success'")
    assert fingerprints == [(1,)]


def test_status_after_the_resume(backfilled, capsys):
    warehouse, _ = backfilled
    assert main(["status", "--warehouse", str(warehouse), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(m["month"], m["last_status"], m["runs"], m["published"]) for m in status["months"]] == [
        ("2024-01", "success", 1, True), ("2024-02", "success", 1, True), ("2024-03", "success", 2, True)]
    assert status["latest_published_month"] == "2024-03" and status["open_runs"] == []


def test_a_corrected_history_is_backfilled_with_restate(tmp_path):
    """The source's January is corrected after January and February were computed: a plain
    backfill refuses (the change log holds another January), `backfill --restate` recomputes both
    months from the new partition versions, with the restatement diff of each, and run again it
    skips them (unchanged since)."""
    from tests.fixtures.sources import customer, order, write_source

    customers = [customer("B1"), customer("B2"), customer("B3")]
    orders = [order("J1", "B1", "500.00"), order("J2", "B2", "300.00"), order("J3", "B3", "100.00"),
              order("F1", "B3", "50.00", ordered_at="2024-02-10T10:00:00")]
    source = write_source(tmp_path / "source", customers=customers, orders=orders)
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    argv = ["backfill", "--source", str(source), "--start", "2024-01", "--end", "2024-02",
            "--warehouse", str(warehouse)]
    assert main(argv) == 0
    # the correction: B3's January order was 900.00, not 100.00 (B3 moves up to A in January and February)
    write_source(source, customers=customers, orders=[*orders[:2], order("J3", "B3", "900.00"), orders[3]])

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 1
    assert "orders: 1 month(s) changed (2024-01)" in err.getvalue() and "--restate" in err.getvalue()
    assert main([*argv, "--restate"]) == 0
    runs = _rows(warehouse, "select strftime(month, '%Y-%m'), restatement from audit.runs where status = 'success' "
                            "order by started_at")
    assert runs == [("2024-01", False), ("2024-02", False), ("2024-01", True), ("2024-02", True)]
    tiers = _rows(warehouse, "select strftime(month, '%Y-%m'), final_tier from marts.customer_tier_monthly "
                             "where customer_id = 'B3' order by month")
    assert [t for _, t in tiers] == ["A", "A"]
    diffs = _rows(warehouse, """select strftime(d.month, '%Y-%m'), d.previous_value, d.restated_value
                                from audit.restatement_diffs d where customer_id = 'B3' and column_name = 'final_tier'
                                order by d.month""")
    assert [(m, restated) for m, _, restated in diffs] == [("2024-01", "A"), ("2024-02", "A")]
    assert all(previous != "A" for _, previous, _ in diffs)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--restate"]) == 0
    assert out.getvalue().count("skipped: unchanged since run") == 2
