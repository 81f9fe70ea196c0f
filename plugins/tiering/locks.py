"""Who writes a warehouse: one lock file beside it, `<warehouse>.lock`.

DuckDB has one writer, and two month runs on one warehouse would interleave their steps. So
every `tiering run`/`backfill` month holds the lock (fcntl) for its whole run, and a local
Airflow scheduler started by `make airflow` (tiering.scheduler) holds it for as long as it
runs: its DAG runs are then the warehouse's writers. The holder writes one JSON line into the
file (who, pid, since) so that whoever waits or is refused is told who holds it.

Processes started under a holder (the scheduler's task processes, the tasks `dag.test()` runs
in the CLI's own process) inherit TIERING_WAREHOUSE_LOCKS naming the lock files held for them,
and do not take them again. A DAG run of any other scheduler checks in `start_run` that no one
else holds its warehouse (warehouse_free).
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from tiering.errors import TieringError

HELD_ENV = "TIERING_WAREHOUSE_LOCKS"  # os.pathsep-separated lock files held by this process or a parent


def lock_path(warehouse: Path | str) -> Path:
    warehouse = Path(warehouse).resolve()
    return warehouse.with_name(warehouse.name + ".lock")


def _held_here(path: Path) -> bool:
    return str(path) in os.environ.get(HELD_ENV, "").split(os.pathsep)


def holder_of(path: Path) -> str:
    """'<who> (pid N, since T)' from the lock file, or a plain description."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"{info.get('holder', 'another process')} (pid {info.get('pid', '?')}, since {info.get('since', '?')})"


def _refusal(warehouse: Path, path: Path) -> str:
    return (f"warehouse {warehouse} is in use by {holder_of(path)} (lock {path}): stop it, wait for it to "
            f"finish, or use another --warehouse")


@contextmanager
def warehouse_lock(warehouse: Path | str, holder: str, kind: str = "run", wait: bool = True):
    """Hold `<warehouse>.lock` for the block. Held by a `run`: waits (saying for whom) when `wait`;
    held by a `scheduler` (which holds it until it is stopped): refuses at once with a TieringError."""
    path = lock_path(warehouse)
    if _held_here(path):
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait or _holder_kind(path) == "scheduler":
                raise TieringError(_refusal(Path(warehouse), path)) from None
            from tiering.console import warn_user

            warn_user(f"waiting for {holder_of(path)}, which holds the warehouse {warehouse} (lock {path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"holder": holder, "kind": kind, "pid": os.getpid(),
                                 "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}) + "\n")
        handle.flush()
        previous = os.environ.get(HELD_ENV)
        os.environ[HELD_ENV] = os.pathsep.join(filter(None, [previous, str(path)]))
        try:
            yield path
        finally:
            if previous is None:
                os.environ.pop(HELD_ENV, None)
            else:
                os.environ[HELD_ENV] = previous
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder_kind(path: Path) -> str | None:
    try:
        return json.loads(path.read_text() or "{}").get("kind")
    except (OSError, ValueError):
        return None


def warehouse_free(warehouse: Path | str) -> None:
    """Raise a TieringError naming the holder if someone other than this process (or the process
    that started it) holds the warehouse's lock."""
    path = lock_path(warehouse)
    if _held_here(path) or not path.exists():
        return
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TieringError(_refusal(Path(warehouse), path)) from None
        fcntl.flock(handle, fcntl.LOCK_UN)
