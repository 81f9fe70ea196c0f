"""A failed, stopped or killed run never reaches BI nor leaves the live marts mixed (issue 32, item 4).

Everything goes through the command line (`tiering run` and the publishing commands, in
subprocesses) on a copy of the session's demo warehouse (2024-01..2024-04 run successfully), one
scenario in order (module fixture), each bullet checked by its own test:

1. `tiering run --month 2024-05`, SIGTERM while it lands (or just after): stopped at the next step
   boundary, failed.
2. `tiering run --month 2024-04`, SIGKILL while it lands (or just after): left 'running' by the dead
   process.
3. `tiering run --month 2024-02` after a customer was deleted from the code registry: the rerun
   numbers it anew, so the dbt test assert_customer_tier_monthly_customer_code_valid fails after
   the marts were built. Its start marks the killed run 'abandoned'.
Then the marts and the published copy must be what the successful runs left, and the publishing
commands must read the months' last successful runs and refuse 2024-05, which has none.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

TIERING = str(Path(sys.executable).with_name("tiering"))
STARTED_TIMEOUT = 300


def _marts(warehouse: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = [r[0] for r in con.execute("select table_name from information_schema.tables "
                                            "where table_schema = 'marts' order by 1").fetchall()]
        return {t: con.execute(f"select * from marts.{t} order by all").fetchall() for t in tables}
    finally:
        con.close()


def _runs(warehouse: Path) -> dict[str, dict]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cursor = con.execute("select * from audit.runs")
        names = [d[0] for d in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
    finally:
        con.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiering(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TIERING, *args], capture_output=True, text=True, timeout=900)


def _run_then_signal(source: Path, warehouse: Path, month: str, sig: int, log: Path) -> tuple[str, int, str]:
    """Start `tiering run`, send `sig` once the run is landing its data or has just landed it (its
    scratch folder landing/_tmp/<run_id> or its manifest landing/_runs/<run_id>.json exists), wait
    for the process; (run_id, exit status, stderr)."""
    landing = warehouse.parent / "landing"
    with open(log, "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen([TIERING, "run", "--source", str(source), "--month", month,
                                 "--warehouse", str(warehouse)], stdout=out, stderr=err)
    run_id = None
    deadline = time.monotonic() + STARTED_TIMEOUT
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if run_id is None:
                for line in log.read_text().splitlines():   # "[1/1] 2024-05 run <run_id> ..."
                    if line.startswith("[1/1]") and " run " in line:
                        run_id = line.split(" run ", 1)[1].split()[0]
            if run_id and ((landing / "_tmp" / run_id).exists() or (landing / "_runs" / f"{run_id}.json").exists()):
                proc.send_signal(sig)
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"`tiering run --month {month}` ended or never started landing: "
                        f"{log.read_text()[-2000:]} {log.with_suffix('.err').read_text()[-2000:]}")
        status = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return run_id, status, log.with_suffix(".err").read_text()


@pytest.fixture(scope="module")
def scenario(demo_warehouse: Path, demo_source: Path, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("run-safety")
    shutil.copytree(demo_warehouse.parent, root / "wh")
    warehouse = root / "wh" / demo_warehouse.name
    published = warehouse.parent / "published" / "tiering_bi.duckdb"
    before = {"marts": _marts(warehouse), "published": _sha256(published), "runs": _runs(warehouse)}

    # 1. SIGTERM during an early step of a new month
    term_run, term_status, term_err = _run_then_signal(demo_source, warehouse, "2024-05", signal.SIGTERM,
                                                       root / "term.log")
    after_term = {"marts": _marts(warehouse), "published": _sha256(published)}

    # 2. SIGKILL during an early step of a month run before
    killed_run, killed_status, _ = _run_then_signal(demo_source, warehouse, "2024-04", signal.SIGKILL,
                                                    root / "kill.log")
    killed_left = _runs(warehouse)[killed_run]

    # runs that look alive: this process on this host; another host, seen a minute ago; another
    # host, not seen for two days (a run of a scheduler that died)
    now = datetime.now(UTC).replace(tzinfo=None)
    con = duckdb.connect(str(warehouse))
    if "heartbeat_at" in killed_left:   # (without the columns the killed run's test fails on its own)
        for run_id, pid, host, heartbeat in (
                ("alive-here", os.getpid(), socket.gethostname(), now),
                ("alive-elsewhere", None, "worker-2.invalid", now - timedelta(minutes=1)),
                ("dead-elsewhere", None, "worker-3.invalid", now - timedelta(days=2))):
            con.execute("insert into audit.runs (run_id, month, status, started_at, pid, host, heartbeat_at) "
                        "values (?, date '2024-03-01', 'running', ?, ?, ?, ?)",
                        [run_id, heartbeat, pid, host, heartbeat])
    con.close()

    # 3. a month that fails in a dbt test after its marts were built: the customer-code registry lost
    # a customer (a damaged table), so the rerun of 2024-02 (same source) numbers it anew, and
    # the dbt test assert_customer_tier_monthly_customer_code_valid finds two numbers for it
    con = duckdb.connect(str(warehouse))
    con.execute("delete from intermediate.int_customer_code_registry where customer_id = (select min(customer_id) "
                "from marts.customer_tier_monthly where month = date '2024-01-01')")
    con.close()
    failed = _tiering("run", "--source", str(demo_source), "--month", "2024-02", "--warehouse", str(warehouse))
    return {"root": root, "warehouse": warehouse, "published": published, "before": before,
            "term": (term_run, term_status, term_err), "after_term": after_term,
            "killed": (killed_run, killed_status, killed_left), "failed": failed,
            "after": {"marts": _marts(warehouse), "published": _sha256(published), "runs": _runs(warehouse)}}


def test_sigterm_stops_the_run_at_the_next_step_and_fails_it(scenario):
    run_id, status, stderr = scenario["term"]
    assert status != 0
    assert "stopped by SIGTERM" in stderr
    run = scenario["after"]["runs"][run_id]
    assert run["status"] == "failed"
    assert "stopped by SIGTERM" in run["message"]
    assert scenario["after_term"]["marts"] == scenario["before"]["marts"]
    assert scenario["after_term"]["published"] == scenario["before"]["published"]


def test_a_killed_run_is_marked_abandoned_by_the_next_run(scenario):
    run_id, status, left = scenario["killed"]
    assert status == -signal.SIGKILL
    assert left["status"] == "running"
    assert left["host"] == socket.gethostname() and left["pid"] is not None and left["heartbeat_at"] is not None
    runs = scenario["after"]["runs"]
    assert runs[run_id]["status"] == "abandoned"
    assert runs[run_id]["finished_at"] is not None
    assert f"its process {left['pid']} on {left['host']} is gone" in runs[run_id]["message"]
    # a run whose process is alive, or seen lately on another host, is left alone
    assert runs["alive-here"]["status"] == "running"
    assert runs["alive-elsewhere"]["status"] == "running"
    assert runs["dead-elsewhere"]["status"] == "abandoned"
    assert "no heartbeat since" in runs["dead-elsewhere"]["message"]


def test_a_month_failing_in_a_dbt_test_changes_no_mart_and_publishes_nothing(scenario):
    failed = scenario["failed"]
    assert failed.returncode == 1
    assert "assert_customer_tier_monthly_customer_code_valid" in failed.stderr
    before, after = scenario["before"], scenario["after"]
    (failed_run,) = [r for r in after["runs"].values() if r["month"].isoformat() == "2024-02-01"
                     and r["run_id"] not in before["runs"]]
    assert failed_run["status"] == "failed"
    # every mart holds exactly what the successful runs left, row for row (run ids included)
    assert after["marts"].keys() == before["marts"].keys()
    for table, rows in before["marts"].items():
        assert after["marts"][table] == rows, table
    good_february = {r["run_id"] for r in before["runs"].values() if r["month"].isoformat() == "2024-02-01"}
    con = duckdb.connect(str(scenario["warehouse"]), read_only=True)
    try:
        assert {r[0] for r in con.execute("select distinct run_id from marts.customer_tier_monthly "
                                          "where month = date '2024-02-01'").fetchall()} == good_february
        assert not con.execute("select count(*) from information_schema.tables where table_schema = 'marts' "
                               "and table_name like '%pending%'").fetchall()[0][0]
    finally:
        con.close()
    assert after["published"] == before["published"]


def test_publishing_commands_read_the_last_successful_run_and_refuse_a_month_without_one(scenario):
    warehouse, root = str(scenario["warehouse"]), scenario["root"]
    message = "no successful run of 2024-05 in "
    for args in (("publish-postgres", "--month", "2024-05", "--dsn", "postgresql://nobody@127.0.0.1:1/none"),
                 ("export", "--month", "2024-05", "--out", str(root / "export-05")),
                 ("report", "--month", "2024-05", "--out", str(root / "report-05.html")),
                 ("crm-export", "--month", "2024-05", "--out", str(root / "crm-05.csv"))):
        result = _tiering(*args, "--warehouse", warehouse)
        assert result.returncode == 1, args
        assert message in result.stderr and "run `tiering run --month 2024-05` first" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    good_february = sorted(r["run_id"] for r in scenario["before"]["runs"].values()
                           if r["month"].isoformat() == "2024-02-01" and r["status"] == "success")
    exported = _tiering("export", "--month", "2024-02", "--out", str(root / "export-02"), "--warehouse", warehouse)
    assert exported.returncode == 0, exported.stderr
    assert json.loads((root / "export-02" / "2024-02" / "manifest.json").read_text())["run_ids"] == good_february[-1:]
    crm = _tiering("crm-export", "--month", "2024-02", "--out", str(root / "crm-02.csv"), "--warehouse", warehouse)
    assert crm.returncode == 0, crm.stderr
