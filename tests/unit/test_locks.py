"""The warehouse lock (<warehouse>.lock): who holds it is named; a scheduler's hold is refused at once."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tiering.errors import TieringError
from tiering.locks import HELD_ENV, lock_path, warehouse_free, warehouse_lock


def _hold_in_child(warehouse, kind: str):
    """Another process holding the lock until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from tiering.locks import warehouse_lock
        with warehouse_lock({str(warehouse)!r}, "the test holder", kind={kind!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    env = {k: v for k, v in os.environ.items() if k != HELD_ENV}
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout.readline().strip() == "held"
    return child


def test_the_lock_file_sits_beside_the_warehouse(tmp_path):
    assert lock_path(tmp_path / "w" / "tiering.duckdb") == tmp_path / "w" / "tiering.duckdb.lock"


def test_a_warehouse_held_by_a_scheduler_is_refused_naming_it(tmp_path):
    warehouse = tmp_path / "tiering.duckdb"
    child = _hold_in_child(warehouse, "scheduler")
    try:
        with pytest.raises(TieringError) as error, warehouse_lock(warehouse, "me"):
            pass
        message = str(error.value)
        assert message.startswith(f"warehouse {warehouse} is in use by the test holder (pid {child.pid}, since ")
        assert str(lock_path(warehouse)) in message and "\n" not in message
        with pytest.raises(TieringError, match="in use by the test holder"):
            warehouse_free(warehouse)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    warehouse_free(warehouse)  # released with its holder
    with warehouse_lock(warehouse, "me") as path:
        assert '"holder": "me"' in path.read_text()
        assert str(path) in os.environ[HELD_ENV].split(os.pathsep)
        warehouse_free(warehouse)  # held by this process: free for its own tasks
        with warehouse_lock(warehouse, "my own dag.test task"):  # re-entered, not deadlocked
            pass
    assert HELD_ENV not in os.environ and path.read_text() == ""


def test_a_run_waits_for_another_run(tmp_path, caplog):
    warehouse = tmp_path / "tiering.duckdb"
    child = _hold_in_child(warehouse, "run")
    with pytest.raises(TieringError, match="in use by the test holder"), warehouse_lock(warehouse, "me", wait=False):
        pass
    import threading

    threading.Timer(1.0, child.stdin.close).start()
    with warehouse_lock(warehouse, "me"):
        pass
    child.wait(timeout=30)
    # a warning every user sees (tiering.console.warn_user: the terminal, also under a progress bar)
    assert f"waiting for the test holder (pid {child.pid}" in caplog.text
