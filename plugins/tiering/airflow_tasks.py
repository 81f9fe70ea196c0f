"""Glue between Airflow and the pipeline steps: error mapping and the failure callback.

A TieringError (bad data, bad rules, failed quality gate) will not get better by
retrying, so the task fails at once; anything else (a lock, a full disk) is retried.
"""
from __future__ import annotations

import logging
import os
from datetime import UTC
from typing import Any

from tiering.errors import TieringError

log = logging.getLogger(__name__)


def run_step(step: str, *args: Any) -> Any:
    """Call tiering.pipeline.<step>(*args); imported here so that parsing the DAG stays light.

    Before the step: a run asked to stop (SIGTERM to `tiering run`/`backfill`: tiering.runs) fails
    here, at the step boundary; otherwise the run's heartbeat is recorded (audit.runs)."""
    from airflow.sdk.exceptions import AirflowFailException

    from tiering import pipeline, runs
    from tiering.console import report_step

    runs.install_stop_handler()
    stopped = runs.stop_requested()
    if stopped and step not in runs.FINISHING_STEPS:
        raise AirflowFailException(f"stopped by {stopped} before {step}; nothing of the run was published "
                                   f"(marts and the published copy are unchanged)")
    report_step(step)  # the CLI's progress display (same process under dag.test())
    run = args[0] if args and isinstance(args[0], dict) else {}
    if step != "start_run" and run.get("run_id") and run.get("warehouse"):
        runs.heartbeat(run["run_id"], run["warehouse"])
    try:
        return getattr(pipeline, step)(*args)
    except TieringError as exc:
        raise AirflowFailException(str(exc)) from exc
    finally:
        runs.install_stop_handler()   # (again: a SIGTERM until the next step's start is not lost either)


ALERT_WEBHOOK_ENV = "TIERING_ALERT_WEBHOOK"
WEBHOOK_TIMEOUT_SECONDS = 5
ALERTS_DDL = """create table if not exists audit.run_alerts (
    run_id varchar, month date, task varchar not null, message varchar not null, alerted_at timestamp not null)"""


def on_task_failure(context: dict) -> None:
    """A task failed: mark the run failed in audit.runs (so `tiering run` prints a one-line reason),
    log one clear ERROR line, write an alert row to audit.run_alerts and, if $TIERING_ALERT_WEBHOOK
    is set, POST the alert to it (Slack-compatible JSON). Never raises: the callback must not hide
    the original failure."""
    from tiering.runspec import RunSpec

    ti = context["ti"]
    try:
        run = ti.xcom_pull(task_ids="start_run") or (context["dag_run"].conf or {})
    except Exception:
        run = {}
    from tiering.pii import scrub

    exception = context.get("exception")
    # (an error may quote row values: no e-mail address or phone number in the log, audit or webhook)
    message = scrub(f"{ti.task_id}: {exception}" if exception else f"{ti.task_id} failed")
    month = run.get("month")
    log.error("ALERT customer tiering run %s (month %s) failed in task %s: %s",
              run.get("run_id") or "?", month or "?", ti.task_id, message)
    if run.get("run_id"):
        try:
            warehouse = run.get("warehouse") or str(RunSpec.from_conf(run).warehouse)
        except Exception:
            warehouse = None
        if warehouse:
            _record_failure(run["run_id"], month, ti.task_id, warehouse, message)
    send_webhook_alert(run.get("run_id"), month, ti.task_id, message)


def _record_failure(run_id: str, month: str | None, task_id: str, warehouse: str, message: str) -> None:
    from tiering.pipeline import mark_failed

    try:
        mark_failed(run_id, warehouse, message)
    except Exception:
        log.exception("could not record the failure in audit.runs")
    try:
        record_alert(warehouse, run_id, month, task_id, message)
    except Exception:
        log.exception("could not write the alert to audit.run_alerts")


def record_alert(warehouse: str, run_id: str | None, month: str | None, task_id: str, message: str) -> None:
    """One row in audit.run_alerts (published to PostgreSQL's audit schema with the next publish),
    e-mail addresses and phone numbers scrubbed out of the message (tiering.pii)."""
    from datetime import datetime

    from tiering.pii import scrub
    from tiering.runspec import parse_month
    from tiering.warehouse import connect, ensure_schema

    con = connect(warehouse)
    try:
        ensure_schema(con)
        con.execute(ALERTS_DDL)
        con.execute("insert into audit.run_alerts values (?, ?, ?, ?, ?)",
                    [run_id, parse_month(month) if month else None, task_id, scrub(message)[:4000],
                     datetime.now(UTC).replace(tzinfo=None)])
    finally:
        con.close()


def send_webhook_alert(run_id: str | None, month: str | None, task_id: str, message: str) -> bool:
    """POST {"text": ...} to $TIERING_ALERT_WEBHOOK (Slack incoming webhooks and most chat tools accept
    it). Off when the variable is unset; returns whether it was sent; never raises."""
    import json
    import urllib.request

    url = os.environ.get(ALERT_WEBHOOK_ENV)
    if not url:
        return False
    text = f":red_circle: customer tiering run {run_id or '?'} (month {month or '?'}) failed in {task_id}: {message}"
    request = urllib.request.Request(url, data=json.dumps({"text": text[:3000]}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()
        return True
    except Exception as exc:
        log.warning("alert webhook %s failed: %s", ALERT_WEBHOOK_ENV, exc)
        return False
