"""Shared test set-up: one Airflow home and one small generated source per session.

The Airflow environment must be set before anything imports airflow, so it is
set here at import time (pytest imports conftest first).

`make test` runs two pytest-xdist workers (`-n 2`), each a session of its own with its own
Airflow home, dbt target and log folders. A test module's tests stay on one worker (its module
fixtures are built once), and the modules that read the session's demo warehouse share a worker,
so it is built once (see pytest_xdist_make_scheduler).
"""
from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="tiering-tests-"))
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DBT_VERSION_CHECK", "false")
# dbt's artefacts and log per session: two workers must not write the same partial-parse file
os.environ["DBT_TARGET_PATH"] = str(_SESSION_DIR / "dbt-target")
os.environ["DBT_LOG_PATH"] = str(_SESSION_DIR / "dbt-logs")
os.environ.pop("TIERING_WAREHOUSE", None)
os.environ.pop("TIERING_SOURCE_DIR", None)

from tiering.airflow_runner import configure_environment  # noqa: E402

configure_environment()

DEMO_START = "2024-01"


# Modules that read the session's demo warehouse or PostgreSQL: under xdist they share one worker.
_SHARED_SCOPE = "demo-warehouse"
_SHARED_MARKS = ("demo_warehouse", "mark.postgres")


@cache
def _xdist_scope(path: str) -> str:
    """A test module is one unit of work (its module fixtures are built once), except the modules
    that name the `demo_warehouse` fixture or the `postgres` mark: they are one unit together, so the
    warehouse is built once and the tests that create the cluster's roles never run at once."""
    source = (Path(__file__).resolve().parents[1] / path).read_text()
    return _SHARED_SCOPE if any(mark in source for mark in _SHARED_MARKS) else path


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist: schedule by the units of `_xdist_scope`, in collection order. (xdist's own
    `xdist_group` mark does not work with pytest 9: it rewrites an attribute pytest no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _xdist_scope(nodeid.split("::", 1)[0])

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def demo_source(session_dir: Path) -> Path:
    """A small deterministic source: 150 customers, 4 months from 2024-01."""
    from tiering.demo import generate

    out = session_dir / "demo-source"
    generate(out, customers=150, months=4, seed=7, start_month=DEMO_START)
    return out


def run_steps(run_conf: dict) -> dict:
    """Run every pipeline step for one month without Airflow (fast path for unit-level tests)."""
    from tiering import pipeline
    from tiering.steps import STEPS

    run = pipeline.start_run(run_conf)
    for step in STEPS:
        getattr(pipeline, step)(run)
    return run


DEMO_WAREHOUSE_MONTHS = ("2024-01", "2024-02", "2024-03", "2024-04")


@pytest.fixture(scope="session")
def demo_warehouse(demo_source: Path, session_dir: Path) -> Path:
    """The small demo source run for all its months (2024-01..2024-04, without Airflow), once per
    session. Read it, never write it: tests that change data take their own copy (shutil.copy)."""
    warehouse = session_dir / "demo-warehouse" / "tiering.duckdb"
    for month in DEMO_WAREHOUSE_MONTHS:
        run_steps({"month": month, "source_dir": str(demo_source), "warehouse": str(warehouse)})
    return warehouse
