"""The DAG under CeleryExecutor: Redis broker, PostgreSQL metadata DB and result backend.

Everything runs in subprocesses with an Airflow home and environment of their own (the test
session's in-process Airflow setup in tests/conftest.py is not touched): a fresh PostgreSQL
database is migrated, then the API server (Airflow 3 workers report to its execution API),
the DAG processor, the scheduler and one Celery worker start; one month of the demo source is
triggered through the REST API and the scheduler queues every task to the worker through
Redis. The run must succeed, every task must have gone through Celery (one SUCCESS row per
task in the result backend), and the marts must hold the month. Everything is stopped and
the database dropped afterwards. docs/executors.md describes the same set-up for production.

Skipped with the reason when Redis (127.0.0.1:6379) or PostgreSQL (TIERING_PG_*) is not reachable.
Slow (processes start, every task is a fresh process): marker `celery`, run by `make test-celery`.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.airflow_api import api as _api
from tiering import targets
from tiering.settings import DAG_ID, PROJECT_ROOT
from tiering.steps import STEPS

pytestmark = [
    pytest.mark.celery,
    pytest.mark.skipif(os.environ.get("TIERING_TEST_CELERY") != "1",
                       reason="starts five Airflow processes (minutes on 2 cores): run `make test-celery`"),
]

REDIS = (os.environ.get("TIERING_REDIS_HOST", "127.0.0.1"), int(os.environ.get("TIERING_REDIS_PORT", "6379")))
MONTH = "2024-01"
# a run computes the month of its data interval: logical date 2024-02-01 -> interval 2024-01-01 -> 2024-02-01
LOGICAL_DATE = "2024-02-01T00:00:00Z"
RUN_TIMEOUT_S = 420
TASK_COUNT = 1 + len(STEPS)  # start_run + the steps of tiering.steps.STEPS


def _redis_reason() -> str | None:
    try:
        with socket.create_connection(REDIS, timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                return f"Redis {REDIS[0]}:{REDIS[1]} does not answer PING"
    except OSError as exc:
        return f"Redis {REDIS[0]}:{REDIS[1]} is not reachable ({exc}); start it or set TIERING_REDIS_HOST/PORT"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_url(driver: str, dbname: str) -> str:
    s = targets.pg_settings()
    auth = s["user"] + (f":{s['password']}" if s["password"] else "")
    return f"{driver}://{auth}@{s['host']}:{s['port']}/{dbname}"


def _wait(what: str, check, timeout: float, processes: dict, logs: Path, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        for name, proc in processes.items():
            if proc.poll() is not None:
                pytest.fail(f"airflow {name} exited ({proc.returncode}) while waiting for {what}: "
                            f"{(logs / f'{name}.log').read_text()[-2000:]}")
        time.sleep(every)
    tails = {name: (logs / f"{name}.log").read_text()[-1200:] for name in processes}
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; log tails: {tails}")


@pytest.fixture
def metadata_db():
    """A fresh PostgreSQL database for Airflow's metadata and Celery's results, dropped afterwards."""
    reason = targets.pg_reachable() or _redis_reason()
    if reason:
        pytest.skip(reason)
    name = f"tiering_airflow_celery_{os.getpid()}"
    con = targets.pg_connect("postgres")
    con.autocommit = True
    con.execute(f'drop database if exists "{name}" with (force)')
    con.execute(f'create database "{name}"')
    con.close()
    yield name
    con = targets.pg_connect("postgres")
    con.autocommit = True
    con.execute(f'drop database if exists "{name}" with (force)')
    con.close()


def test_one_month_through_celery_workers(metadata_db, demo_source, tmp_path):
    home = tmp_path / "airflow"
    logs = tmp_path / "logs"
    logs.mkdir()
    warehouse = tmp_path / "warehouse" / "tiering.duckdb"
    port = _free_port()
    redis_db = 1 + os.getpid() % 14
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        # psycopg 3 serves both of Airflow's engines (the async default would need asyncpg)
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _pg_url("postgresql+psycopg", metadata_db),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": _pg_url("postgresql+psycopg", metadata_db),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": _pg_url("db+postgresql", metadata_db),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # only the triggered run: no scheduled run of the latest month competes (max_active_runs=1)
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "GX_ANALYTICS_ENABLED": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    })
    airflow = str(Path(sys.executable).with_name("airflow"))
    # the worker imports this; `airflow celery worker` would hide an ImportError behind "needs Airflow >= 2.8"
    probe = subprocess.run([sys.executable, "-c", "import celery; "
                            "from airflow.providers.celery.executors import celery_executor_utils; "
                            "print(celery.__version__)"], env=env, capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.fail("the Celery executor cannot start with the installed packages: "
                    f"{probe.stderr.strip().splitlines()[-1]} (celery 5.7 dropped celery.backends.database.retry, "
                    "which apache-airflow-providers-celery 3.26 imports: pin celery<5.7, see docs/executors.md)")
    started = time.monotonic()
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    migrated_s = time.monotonic() - started

    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, args in (("api-server", ["api-server", "--port", str(port)]),
                           ("dag-processor", ["dag-processor"]),
                           ("scheduler", ["scheduler"]),
                           ("celery-worker", ["celery", "worker", "--concurrency", "2"])):
            with open(logs / f"{name}.log", "w") as log:   # the child process keeps its own descriptor
                processes[name] = subprocess.Popen([airflow, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        _wait("the DAG to be parsed and served by the API server",
              lambda: _api(base, "GET", f"/dags/{DAG_ID}")[0] == 200, 180, processes, logs)
        status, body = _api(base, "PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
        assert status == 200, body
        run_id = f"celery_test_{MONTH}"
        status, body = _api(base, "POST", f"/dags/{DAG_ID}/dagRuns", {
            "dag_run_id": run_id, "logical_date": LOGICAL_DATE,
            "conf": {"source_dir": str(demo_source), "warehouse": str(warehouse)}})
        assert status == 200, body
        triggered = time.monotonic()

        def finished():
            code, run = _api(base, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
            if code == 200 and run.get("state") in ("success", "failed"):
                return run
            _, tasks = _api(base, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
            broken = [t["task_id"] for t in tasks.get("task_instances", [])
                      if t.get("state") in ("failed", "up_for_retry", "upstream_failed")]
            return {"state": "failed", "broken": broken} if broken else None

        run = _wait(f"DAG run {run_id} to finish", finished, RUN_TIMEOUT_S, processes, logs, every=3)
        run_s = time.monotonic() - triggered
        _, tasks = _api(base, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
        states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
        assert run["state"] == "success", (run, states, (logs / "celery-worker.log").read_text()[-3000:])
        assert run["data_interval_start"].startswith(f"{MONTH}-01T00:00:00"), run
        assert len(states) == TASK_COUNT and set(states.values()) == {"success"}, states
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # every task went through Celery: one result per task in the result backend
    con = targets.pg_connect(metadata_db)
    try:
        celery_results = con.execute("select status, count(*) from celery_taskmeta group by status").fetchall()
        executors = con.execute("select distinct hostname <> '' from task_instance where dag_id = %s",
                                [DAG_ID]).fetchall()
    finally:
        con.close()
    assert dict(celery_results).get("SUCCESS", 0) >= TASK_COUNT, celery_results
    assert executors == [(True,)]
    assert "customer_tiering_monthly" in (logs / "celery-worker.log").read_text() or celery_results

    from tiering.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
        rows, tiers = con.execute("select count(*), count(distinct final_tier) from marts.customer_tier_monthly "
                                  "where month = date '2024-01-01'").fetchone()
        run_status = con.execute("select status from audit.runs where month = date '2024-01-01'").fetchall()
    finally:
        con.close()
    assert rows > 50 and tiers >= 3, (rows, tiers)
    assert run_status == [("success",)]
    print(f"celery: migrate {migrated_s:.0f} s, run {run_s:.0f} s, {rows} customer rows")
