"""Glue between Airflow and the pipeline steps: error mapping and the failure callback.

A TieringError (bad data, bad rules, failed quality gate) will not get better by
retrying, so the task fails at once; anything else (a lock, a full disk) is retried.
"""
from __future__ import annotations

import logging
from typing import Any

from tiering.errors import TieringError

log = logging.getLogger(__name__)


def run_step(step: str, *args: Any) -> Any:
    """Call tiering.pipeline.<step>(*args); imported here so that parsing the DAG stays light."""
    from airflow.sdk.exceptions import AirflowFailException

    from tiering import pipeline

    try:
        return getattr(pipeline, step)(*args)
    except TieringError as exc:
        raise AirflowFailException(str(exc)) from exc


def on_task_failure(context: dict) -> None:
    """Record the failure in audit.runs so `tiering run` can print a one-line reason."""
    from tiering.pipeline import mark_failed
    from tiering.runspec import RunSpec

    ti = context["ti"]
    run = ti.xcom_pull(task_ids="start_run") or (context["dag_run"].conf or {})
    exception = context.get("exception")
    message = f"{ti.task_id}: {exception}" if exception else f"{ti.task_id} failed"
    log.error("customer tiering run failed: %s", message)
    if not run.get("run_id"):
        return
    try:
        mark_failed(run["run_id"], run.get("warehouse") or str(RunSpec.from_conf(run).warehouse), message)
    except Exception:  # the callback must never hide the original failure
        log.exception("could not record the failure in audit.runs")
