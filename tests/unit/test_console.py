"""tiering.console: what the terminal shows during `tiering run` / `backfill`, and the run's log file."""
from __future__ import annotations

import io
import logging
import sys

import pytest

from tiering.console import RunConsole, report_step, warn_user


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_a_month(console: RunConsole) -> None:
    """What a month's run does while the console is on: our lines, a step, dbt/GE/Airflow output."""
    console.line("rules v1 from rules.yml")
    console.month_started(1, "2024-01", "run-1")
    report_step("transform_marts")
    print("12:00:01  1 of 97 OK created sql table model marts.tier_policy")        # dbt's runner (stdout)
    sys.stderr.write("Calculating Metrics: 100%\n")                                 # a stray stderr write
    logging.getLogger("tiering.pipeline").info("landed 701 rows")                    # a library module
    logging.getLogger("airflow.task").warning("an Airflow warning")                  # a root handler record
    warn_user("2024-01 is provisional: the month has not ended")
    console.month_finished(1, "2024-01  A: 3 customers, 80.0% of revenue; quarantined rows: 0  (1.0 s)")


def test_off_a_terminal_plain_lines_and_everything_else_in_the_log_file(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, stdout = root.handlers[:], sys.stdout
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    with RunConsole(warehouse, total=1, stdout=out, stderr=err) as console:
        _run_a_month(console)
    assert out.getvalue().splitlines() == [
        "rules v1 from rules.yml",
        "[1/1] 2024-01 run run-1 started",
        "[1/1] 2024-01  A: 3 customers, 80.0% of revenue; quarantined rows: 0  (1.0 s)"]
    assert err.getvalue() == "warning: 2024-01 is provisional: the month has not ended\n"
    assert console.log_path.parent == warehouse.parent / "logs"
    assert console.log_path.name.startswith("tiering-") and console.log_path.suffix == ".log"
    log = console.log_path.read_text()
    for text in ("1 of 97 OK created sql table model marts.tier_policy", "Calculating Metrics: 100%",
                 "INFO tiering.pipeline: landed 701 rows", "WARNING airflow.task: an Airflow warning",
                 "WARNING tiering.user: 2024-01 is provisional", "--- 2024-01 transform_marts",
                 "[1/1] 2024-01 run run-1 started", "[1/1] 2024-01  A: 3 customers"):
        assert text in log, text
    # everything is put back
    assert root.handlers == handlers and sys.stdout is stdout
    assert not logging.getLogger("tiering.user").handlers


def test_on_a_terminal_a_bar_with_the_step_and_the_month_lines(tmp_path):
    out, err = FakeTerminal(), io.StringIO()
    with RunConsole(tmp_path / "tiering.duckdb", total=1, stdout=out, stderr=err) as console:
        assert console.tty
        _run_a_month(console)
    shown = out.getvalue()
    assert "[1/1] 2024-01  A: 3 customers, 80.0% of revenue" in shown
    assert "warning: 2024-01 is provisional" in shown          # above the bar
    assert "1 of 97 OK" not in shown and "landed 701 rows" not in shown and "Airflow warning" not in shown
    assert "started" not in shown                             # the bar says which month runs
    assert "1 of 97 OK" in console.log_path.read_text()


def test_verbose_streams_everything_and_still_writes_the_log(tmp_path):
    out, err = FakeTerminal(), io.StringIO()
    with RunConsole(tmp_path / "tiering.duckdb", total=1, verbose=True, stdout=out, stderr=err) as console:
        assert not console.tty                                # no bar
        _run_a_month(console)
    assert "1 of 97 OK created sql table model" in out.getvalue()
    assert "[1/1] 2024-01 run run-1 started" in out.getvalue()
    assert "INFO tiering.pipeline: landed 701 rows" in err.getvalue()
    assert err.getvalue().count("2024-01 is provisional") == 1
    assert "1 of 97 OK" in console.log_path.read_text()


def test_a_failure_names_the_log_file_on_stderr(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with (pytest.raises(RuntimeError),
          RunConsole(tmp_path / "tiering.duckdb", total=1, stdout=out, stderr=err) as console):
        print("dbt: 1 of 3 ERROR creating sql table model marts.x")
        raise RuntimeError("boom")
    assert err.getvalue() == f"log: {console.log_path}\n"
    log = console.log_path.read_text()
    assert "ERROR creating sql table model marts.x" in log and "failed: RuntimeError('boom')" in log


def test_a_stream_kept_from_the_run_writes_where_it_wrote_before(tmp_path, capsys):
    """A handler set up during the run (Airflow configures logging on import) keeps a working stream."""
    with RunConsole(tmp_path / "tiering.duckdb", total=1, stdout=io.StringIO(), stderr=io.StringIO()):
        kept = logging.StreamHandler(sys.stdout)
    kept.stream.write("after the run\n")
    assert "after the run" in capsys.readouterr().out
