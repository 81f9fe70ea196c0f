"""Which run of a month counts, runs that died, and stopping a run on SIGTERM.

- The month's run that BI, exports and reports read is its last successful run
  (audit.runs status 'success'): `last_successful_run`, `require_successful_run`.
- A run records the process and host that run it and a heartbeat (audit.runs pid, host,
  heartbeat_at: at its start and before each step). The next run marks a dead run `abandoned`
  (`abandon_dead_runs`), by this rule:
    * pid recorded (a `tiering run`/`backfill`: the whole DAG run is one process, dag.test) on this
      host: abandoned when that process is gone; while it is alive (or its pid was reused), left alone;
    * otherwise (tasks under a scheduler: a process per task, maybe on other hosts; or a run
      recorded on another host): abandoned only when its heartbeat is older than
      $TIERING_STALE_RUN_HOURS (default 24) hours; a run with a fresh heartbeat is left alone.
- SIGTERM during a `tiering run`/`backfill` sets a flag; `airflow_tasks.run_step` checks it
  before each step and fails the run there ("stopped by SIGTERM"), up to `publish` (after it the
  run's rows are in the marts and published: it finishes). Under a real scheduler,
  Airflow's own SIGTERM handling applies (the handler is installed in-process only).
"""
from __future__ import annotations

import os
import signal
import socket
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tiering.errors import TieringError

STALE_HOURS_ENV = "TIERING_STALE_RUN_HOURS"
DEFAULT_STALE_HOURS = 24.0

# The steps after `publish`, which swapped the run's rows into the marts and published them: a run
# asked to stop there finishes (short steps) rather than be marked failed with its rows published.
FINISHING_STEPS = ("publish_postgres", "finish_run")

# set by tiering.airflow_runner while it runs the DAG in this process (dag.test)
IN_PROCESS = False
_STOP_SIGNAL: str | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def host_name() -> str:
    return socket.gethostname()


# --------------------------------------------------------------------------- the month's run

def last_successful_run(con, month: date) -> str | None:
    """The month's last successful run in audit.runs (None when it has none)."""
    exists = con.execute("select count(*) from information_schema.tables where table_schema = 'audit' "
                         "and table_name = 'runs' and table_catalog = current_database()").fetchall()[0][0]
    if not exists:
        return None
    row = con.execute("select run_id from audit.runs where month = ? and status = 'success' "
                      "order by finished_at desc nulls last, run_id desc limit 1", [month]).fetchall()
    return row[0][0] if row else None


def no_successful_run(month: date, where: Path | str, available: str | None = None) -> TieringError:
    """The one-line refusal; `available`: the months that can be read there, when known."""
    known = f" (months available: {available})" if available else ""
    return TieringError(f"no successful run of {month:%Y-%m} in {where}{known}; "
                        f"run `tiering run --month {month:%Y-%m}` first")


def require_successful_run(con, month: date, where: Path | str) -> str:
    run_id = last_successful_run(con, month)
    if run_id is None:
        raise no_successful_run(month, where)
    return run_id


# --------------------------------------------------------------------------- dead runs

def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        return True
    return True


def stale_after() -> timedelta:
    return timedelta(hours=float(os.environ.get(STALE_HOURS_ENV) or DEFAULT_STALE_HOURS))


def abandon_dead_runs(con, by_run_id: str) -> list[str]:
    """Mark the runs still 'running' whose process is gone `abandoned` (rule: module docstring)."""
    now = _now()
    here = host_name()
    dead = []
    for run_id, pid, host, heartbeat, started in con.execute(
            "select run_id, pid, host, heartbeat_at, started_at from audit.runs "
            "where status = 'running' and run_id <> ?", [by_run_id]).fetchall():
        last_sign = heartbeat or started
        if pid is not None and host == here:
            if process_alive(pid):
                continue
            why = f"its process {pid} on {host} is gone (killed?)"
        elif last_sign is not None and now - last_sign > stale_after():
            why = f"no heartbeat since {last_sign:%Y-%m-%d %H:%M:%S} UTC (host {host or 'unknown'})"
        else:
            continue
        con.execute("update audit.runs set status = 'abandoned', finished_at = ?, message = ? "
                    "where run_id = ? and status = 'running'",
                    [now, f"abandoned: {why}; found by run {by_run_id}", run_id])
        dead.append(run_id)
    return dead


def heartbeat(run_id: str, warehouse: Path | str) -> None:
    """The run is alive: heartbeat_at now, and the process and host running it."""
    from tiering.warehouse import connect

    con = connect(warehouse)
    try:
        con.execute("update audit.runs set heartbeat_at = ?, pid = ?, host = ? where run_id = ? and status = 'running'",
                    [_now(), os.getpid() if IN_PROCESS else None, host_name(), run_id])
    finally:
        con.close()


# --------------------------------------------------------------------------- SIGTERM

def _on_sigterm(signum, frame) -> None:
    global _STOP_SIGNAL
    _STOP_SIGNAL = "SIGTERM"


def install_stop_handler() -> None:
    """In-process runs only (tiering run/backfill): SIGTERM stops the run at the next step boundary.
    Installed again before each step: Airflow's task runner installs its own for every task."""
    if IN_PROCESS and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def stop_requested() -> str | None:
    return _STOP_SIGNAL
