"""A live Airflow scheduler on this project, started like `make airflow` (tiering.scheduler.Scheduler:
`airflow standalone` with the project's settings) on a free port and a temporary AIRFLOW_HOME.

A month is triggered through the REST API the way a data engineer does it (logical date = the first
day after the month, conf with source_dir and warehouse): the run must succeed and have computed
the month of its data interval, as the UI shows it. A run whose conf month disagrees with its
interval is refused. While the scheduler holds the warehouse, `tiering run` on it is refused with
a message naming the scheduler.

Opt-in (it starts five Airflow processes; a few minutes on 2 cores): `make test-airflow`.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from tests.fixtures.airflow_api import api as _api
from tests.fixtures.warehouse import query as _rows
from tiering.locks import HELD_ENV, lock_path, warehouse_free
from tiering.scheduler import Scheduler
from tiering.settings import DAG_ID
from tiering.steps import STEPS

pytestmark = [
    pytest.mark.airflow_live,
    pytest.mark.skipif(os.environ.get("TIERING_TEST_AIRFLOW") != "1",
                       reason="starts a live Airflow scheduler (minutes on 2 cores): run `make test-airflow`"),
]

MONTH = date(2024, 2, 1)
RUN_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(what: str, check, timeout: float, scheduler: Scheduler, every: float = 3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if scheduler.process.poll() is not None:
            pytest.fail(f"airflow standalone exited while waiting for {what}: {scheduler.log.read_text()[-3000:]}")
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}: {scheduler.log.read_text()[-3000:]}")


def _trigger(base: str, run_id: str, logical_date: str, conf: dict, scheduler: Scheduler) -> tuple[dict, dict]:
    status, body = _api(base, "POST", f"/dags/{DAG_ID}/dagRuns",
                        {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf})
    assert status == 200, body

    def finished():
        code, run = _api(base, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        return run if code == 200 and run.get("state") in ("success", "failed") else None

    run = _wait(f"DAG run {run_id}", finished, RUN_TIMEOUT_S, scheduler)
    _, tasks = _api(base, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
    return run, {t["task_id"]: t["state"] for t in tasks.get("task_instances", [])}


def test_a_month_triggered_through_the_rest_api_computes_its_data_interval(demo_source, tmp_path):
    warehouse = tmp_path / "warehouse" / "tiering.duckdb"
    scheduler = Scheduler(tmp_path / "airflow", _free_port(), warehouse, log=tmp_path / "standalone.log",
                          extra_env={
                              # the REST calls below without a login; the UI login of `make airflow` is unchanged
                              "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                              "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                              # only the triggered runs: no scheduled run of the latest month competes
                              "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                              "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                          })
    conf = {"source_dir": str(demo_source), "warehouse": str(warehouse)}
    with scheduler:
        base = scheduler.url
        _wait("the DAG to be served", lambda: _api(base, "GET", f"/dags/{DAG_ID}")[0] == 200, 240, scheduler)

        # the scheduler holds the warehouse: a `tiering run` on it (another terminal) is refused at once
        env = {k: v for k, v in os.environ.items() if k != HELD_ENV}
        cli = subprocess.run([str(Path(sys.executable).with_name("tiering")), "run", "--source", str(demo_source),
                              "--month", "2024-01", "--warehouse", str(warehouse)],
                             env=env, capture_output=True, text=True, timeout=300)
        assert cli.returncode == 1, cli.stdout + cli.stderr
        *before, error = cli.stderr.splitlines()   # (the console names its log file first)
        assert all(line.startswith("log: ") for line in before), cli.stderr
        assert error.startswith(f"tiering: error: warehouse {warehouse.resolve()} is in use by the Airflow "
                                f"scheduler of `make airflow` on {base}"), cli.stderr
        assert str(lock_path(warehouse)) in error

        # logical date 2024-03-01: the UI shows the interval 2024-02-01 -> 2024-03-01, and February is computed
        run, states = _trigger(base, "rest_2024_02", "2024-03-01T00:00:00Z", conf, scheduler)
        assert run["state"] == "success", (states, scheduler.log.read_text()[-3000:])
        assert run["data_interval_start"].startswith("2024-02-01T00:00:00")
        assert run["data_interval_end"].startswith("2024-03-01T00:00:00")
        assert len(states) == 1 + len(STEPS) and set(states.values()) == {"success"}, states

        # a conf month that disagrees with the interval is refused by start_run, nothing computed
        bad, bad_states = _trigger(base, "rest_conflict", "2024-04-01T00:00:00Z", {**conf, "month": "2024-04"},
                                   scheduler)
        assert bad["state"] == "failed" and bad_states["start_run"] == "failed", bad_states
        assert all(s in ("upstream_failed", None) for t, s in bad_states.items() if t != "start_run"), bad_states

    warehouse_free(warehouse)  # released when the scheduler stopped
    assert scheduler.process.poll() is not None
    assert _rows(warehouse, "select month, status from audit.runs") == [(MONTH, "success")]
    assert _rows(warehouse, "select distinct month, is_provisional from marts.customer_tier_monthly") == \
        [(MONTH, False)]
    assert _rows(warehouse, "select count(*) > 50 from marts.customer_tier_monthly") == [(True,)]
