"""Run the real Airflow DAG for a month, in this process, with `dag.test()`.

Sets up an Airflow home (default `<project>/.airflow`, or $AIRFLOW_HOME) with a
SQLite metadata DB on first use. The first `dag.test()` in a process costs a few
seconds more (the DagBag, and the in-process Execution API that runs its task instances:
start_execution_api); later ones are fast, so a backfill runs all its months in one process.
"""
from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from tiering.console import warn_user
from tiering.errors import TieringError
from tiering.runspec import RunSpec
from tiering.settings import DAG_ID, PROJECT_ROOT

_DAG = None


def configure_environment() -> Path:
    """Airflow settings for a local, in-process run. Must happen before `import airflow`."""
    home = Path(os.environ.setdefault("AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow")))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS", "True")
    return home


@contextmanager
def home_lock(home: Path):
    """One `tiering run`/`backfill` at a time per Airflow home: dag.test replaces the DAG run of
    the same logical date, and the SQLite metadata DB has one writer. A second run waits (and says so)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "tiering-run.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            warn_user(f"waiting for another tiering run that uses the Airflow home {home} (lock {path}); "
                      f"set AIRFLOW_HOME to run in parallel on another warehouse")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_metadata_db(home: Path) -> None:
    """`airflow db migrate` once per Airflow home (SQLite; a few seconds)."""
    marker = home / ".tiering-db-ready"
    if marker.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        proc = subprocess.run([str(airflow), *args], env=os.environ.copy(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise TieringError(f"`airflow {' '.join(args)}` failed in {home}: {proc.stderr.strip()[-800:]}")
    marker.write_text("ok\n")


def get_dag():
    """The DAG object, loaded from the dags folder like the scheduler does."""
    global _DAG
    if _DAG is None:
        home = configure_environment()
        ensure_metadata_db(home)
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        if bag.import_errors:
            raise TieringError(f"the DAG does not import: {bag.import_errors}")
        _DAG = bag.dags.get(DAG_ID)
        if _DAG is None:
            raise TieringError(f"DAG {DAG_ID} not found in {os.environ['AIRFLOW__CORE__DAGS_FOLDER']}")
    return _DAG


_EXECUTION_API_READY = False


def start_execution_api() -> None:
    """Start Airflow's in-process Execution API, which `dag.test()` runs its task instances
    through, by asking it for its health. Building that FastAPI app is a one-off of a process
    (~5-8 s here, like an API server's start in a deployment): the first `dag.test()` would
    otherwise pay it inside its first task. Later calls return at once."""
    global _EXECUTION_API_READY
    if _EXECUTION_API_READY:
        return
    import httpx
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    api = in_process_api_server()  # cached per process; dag.test() uses the same instance
    with httpx.Client(transport=api.transport, base_url="http://in-process.invalid/") as client:
        response = client.get("health")
    if response.status_code != 200:
        raise TieringError(f"Airflow's in-process Execution API is not healthy: HTTP {response.status_code} "
                           f"{response.text[:200]}")
    _EXECUTION_API_READY = True


def logical_date_of(spec: RunSpec) -> datetime:
    """The logical date that gives a manual run the data interval [month, month + 1): the first
    day after the month (CronDataIntervalTimetable.infer_manual_data_interval takes the last whole
    period before it). `dag.test()` and a REST trigger alike."""
    after = spec.next_month
    return datetime(after.year, after.month, 1, tzinfo=UTC)


def run_month(spec: RunSpec) -> dict:
    """Run the DAG for `spec.month`; return the month summary or raise TieringError with the reason.
    Holds the warehouse's lock (tiering.locks) for the whole run."""
    from tiering import runs
    from tiering.locks import warehouse_lock
    from tiering.pipeline import month_summary, run_status

    home = configure_environment()
    # the whole DAG run is this process: recorded in audit.runs (a killed run is then found dead), and
    # SIGTERM stops the run at the next step boundary (tiering.runs)
    runs.IN_PROCESS = True
    runs.install_stop_handler()
    if runs.stop_requested():
        raise TieringError(f"stopped by {runs.stop_requested()} before the run of {spec.month_text} started")
    holder = f"tiering run of {spec.month_text} (run id {spec.run_id})"
    with warehouse_lock(spec.warehouse, holder), home_lock(home):
        dag = get_dag()
        start_execution_api()
        dag_run = dag.test(logical_date=logical_date_of(spec), run_conf=spec.to_conf())
        ran = task_states(dag_run)
    state = str(getattr(dag_run.state, "value", dag_run.state))
    status, message = run_status(spec)
    if not any(s in ("success", "failed", "upstream_failed", "skipped") for s in ran.values()):
        raise TieringError(f"DAG run for {spec.month_text} ran no task ({no_task_reason(dag, dag_run, ran)}); "
                           f"nothing was computed")
    if state != "success" or status != "success":
        raise TieringError(message or f"DAG run for {spec.month_text} ended in state {state}; see the Airflow log")
    return month_summary(spec)


def task_states(dag_run) -> dict[str, str]:
    """task_id -> state of a DAG run's task instances (none when the run created none)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance.task_id, TaskInstance.state).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id).all()
    return {task_id: str(getattr(state, "value", state)) for task_id, state in rows}


def no_task_reason(dag, dag_run, ran: dict[str, str]) -> str:
    """Why a DAG run ran none of its tasks, as far as Airflow's records tell."""
    logical = dag_run.logical_date
    start = dag.start_date
    if logical is not None and start is not None and logical < start:
        return (f"its logical date {logical:%Y-%m-%d} is before the DAG's start_date {start:%Y-%m-%d}, so Airflow "
                f"created no task instance")
    if not ran:
        return f"Airflow created no task instance for DAG run {dag_run.run_id} (state {dag_run.state})"
    return f"its tasks stayed {', '.join(sorted(set(ran.values())))} in DAG run {dag_run.run_id}"
