"""The steps of one monthly run. Each DAG task calls exactly one function here.

    start_run -> extract_and_land -> gate_landed -> transform_staging -> gate_staging
              -> score_potential -> transform_marts -> gate_marts -> publish -> publish_postgres
              -> finish_run                                  (the order: tiering.steps.STEPS)

A failing gate stops the run before `publish`, so what BI reads (the published
copy) still holds the previous good result.

Every function takes the run as a plain dict (RunSpec.to_conf(), what travels
between tasks via XCom) and returns a small JSON-able summary.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from tiering import landing, marts_build, runs
from tiering.console import warn_user
from tiering.dbt_runner import run_dbt
from tiering.locks import warehouse_free
from tiering.migrate import drop_unchained_staging, refuse_old_core
from tiering.operations import manifest_fingerprint
from tiering.retention import cleanup_after_run
from tiering.rules import load_rules
from tiering.runspec import MonthError, RunSpec, check_month_ended, current_month
from tiering.settings import landing_root
from tiering.source import check_source_dir
from tiering.warehouse import add_provisional_columns, connect, ensure_schema, register_landing

log = logging.getLogger(__name__)


# A monthly run builds the models and runs their data tests; dbt's unit tests (rule edges on
# fixed inputs, independent of the month's data) run in CI instead (tests/integration/test_dbt_unit_tests.py).
# Nor does it write target/manifest.json and run_results.json (about 0.6 s each per invocation, and
# shared by every run of the project); a failed node is named in the task's error and in logs/dbt.log.
PRODUCTION_BUILD = ("--exclude-resource-type", "unit_test", "--no-write-json")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def start_run(conf: dict, data_interval_start: datetime | None = None,
              data_interval_end: datetime | None = None) -> dict:
    """Resolve the run (its month: the month of the DAG run's data interval, runspec.month_of_run),
    refuse a month that has not ended unless the conf says provisional, validate rules and source
    before any data is written (and refuse a warehouse the previous core built: tiering.migrate),
    record the run."""
    spec = RunSpec.from_conf(conf, data_interval_start, data_interval_end)
    check_month_ended(spec.month, spec.provisional)
    if spec.land_through and spec.land_through >= current_month():
        # its partition would grow once the month is over: a restatement for the month's own run
        raise MonthError(f"land_through {spec.land_through:%Y-%m} has not ended yet: a run lands only months "
                         f"that have ended")
    if spec.provisional and spec.month < current_month():
        warn_user(f"{spec.month_text} has ended: computed as a final month, not provisional")
        spec = replace(spec, provisional=False)
    rules = load_rules(spec.rules_path)          # a bad rules file fails here, nothing written
    check_source_dir(spec.source_dir)            # so does a missing source directory
    warehouse_free(spec.warehouse)               # and a warehouse another run or scheduler writes
    con = connect(spec.warehouse)
    try:
        refuse_old_core(con, spec.warehouse)     # a warehouse of the previous core: `tiering migrate` first
        drop_unchained_staging(con)              # typed before the version chain: typed again
        ensure_schema(con)
        add_provisional_columns(con)
        con.execute("""insert into audit.rule_versions
                       select ?, ?, ?, ? where not exists
                       (select 1 from audit.rule_versions where rule_version = ?)""",
                    [rules.version, rules.data["label"], rules.canonical_json, _now(), rules.version])
        abandoned = runs.abandon_dead_runs(con, spec.run_id)
        con.execute("delete from audit.runs where run_id = ?", [spec.run_id])
        con.execute("insert into audit.runs (run_id, month, rule_version, status, source_dir, landing_dir, "
                    "restatement, started_at, pid, host, heartbeat_at) "
                    "values (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                    [spec.run_id, spec.month, rules.version, str(spec.source_dir), str(spec.landing_manifest),
                     spec.restate, _now(), os.getpid() if runs.IN_PROCESS else None, runs.host_name(), _now()])
    finally:
        con.close()
    for run_id in abandoned:
        warn_user(f"run {run_id} was still 'running' but its process is gone: marked abandoned (audit.runs)")
    if spec.provisional:
        warn_user(f"{spec.month_text} is computed as provisional: the month has not ended; its marts are marked "
                  f"is_provisional and it is not published to PostgreSQL")
    log.info(f"run {spec.run_id}: month {spec.month_text}, rules {rules.version}, source {spec.source_dir}")
    return spec.to_conf()


def extract_and_land(run: dict) -> dict:
    """Bring the change log up to the run's month (tiering.landing) and show dbt the partition
    versions the run reads (landing.partitions and the landing views)."""
    spec = RunSpec.from_conf(run)
    manifest = landing.extract_and_land(spec)
    con = connect(spec.warehouse)
    try:
        register_landing(con, manifest)
    finally:
        con.close()
    landed = {name: t["landed"] for name, t in manifest["tables"].items() if t["landed"]}
    log.info(f"change log {landing_root(spec.warehouse)}: landed {landed or 'nothing new'}; the month reads "
             + ", ".join(f"{name} {len(t['partitions'])} partition(s), {t['rows']} rows"
                         for name, t in manifest["tables"].items()))
    return {name: t["rows"] for name, t in manifest["tables"].items()}


# What transform_staging builds: the typed change log, the month's as-of rows and its quarantine.
STAGING_SELECTION = ("staging", "intermediate.as_of", "quarantine")


def transform_staging(run: dict) -> dict:
    """dbt build of staging (each landed partition typed once), the month's as-of rows and its
    quarantine, with their tests."""
    spec = RunSpec.from_conf(run)
    # (builds no mart: the var makes this build share transform_marts' parse)
    return run_dbt("build", spec, load_rules(spec.rules_path), "--select", *STAGING_SELECTION, *PRODUCTION_BUILD,
                   extra_vars={"marts_schema": marts_build.PENDING_SCHEMA})


def score_potential(run: dict) -> dict:
    from tiering.potential import score_month

    spec = RunSpec.from_conf(run)
    return score_month(spec, load_rules(spec.rules_path))


def transform_marts(run: dict) -> dict:
    """dbt build of intermediate, marts and audit; the marts into `marts_pending`, swapped into
    `marts` by `publish` once every test and gate passed (tiering.marts_build)."""
    spec = RunSpec.from_conf(run)
    marts_build.prepare(spec)
    # (not what transform_staging built: tests with a parent there and one here stay selected)
    return run_dbt("build", spec, load_rules(spec.rules_path), "--exclude", *STAGING_SELECTION,
                   "--indirect-selection", "cautious", *PRODUCTION_BUILD,
                   extra_vars={"marts_schema": marts_build.PENDING_SCHEMA})


def gate_landed(run: dict) -> dict:
    from tiering.quality import run_gate

    return run_gate("landed", RunSpec.from_conf(run))


def gate_staging(run: dict) -> dict:
    from tiering.quality import run_gate

    return run_gate("staging", RunSpec.from_conf(run))


def gate_marts(run: dict) -> dict:
    from tiering.quality import run_gate

    return run_gate("marts", RunSpec.from_conf(run))


def publish(run: dict) -> dict:
    """Swap the run's marts rows in (one transaction), then write the copy BI reads."""
    from tiering.publish import publish_run

    spec = RunSpec.from_conf(run)
    marts_build.swap_in(spec)
    return publish_run(spec)


def publish_postgres(run: dict) -> dict:
    from tiering.pg_publish import publish_month

    return publish_month(RunSpec.from_conf(run))


def input_checksum(manifest: dict) -> str:
    """The checksum of a run's inputs: every partition version it read, with its fingerprint."""
    read = {name: {p: [v["version"], v["rows"], v["hash"]] for p, v in sorted(t["partitions"].items())}
            for name, t in sorted(manifest["tables"].items())}
    return hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()


def finish_run(run: dict) -> dict:
    """Mark the run successful with the checksum of its inputs, and return the month's summary."""
    spec = RunSpec.from_conf(run)
    manifest = landing.read_manifest(spec)
    checksum = input_checksum(manifest)
    con = connect(spec.warehouse)
    try:
        con.execute("update audit.runs set status = 'success', finished_at = ?, input_checksum = ?, "
                    "source_fingerprint = ? where run_id = ?",
                    [_now(), checksum, manifest_fingerprint(manifest), spec.run_id])
        changed = _record_restatement_diff(con, spec) if spec.restate else None
    finally:
        con.close()
    summary = month_summary(spec)
    cleanup_after_run(spec.warehouse)   # the retention TIERING_RETAIN_*_DAYS sets, if any (tiering.retention)
    if changed is not None:
        warn_user(f"restatement of {spec.month_text}: {changed} value(s) differ from the previous run "
                  f"(see audit.restatement_diffs where run_id = '{spec.run_id}')")
    log.info(format_summary(summary))
    return summary


RESTATED_COLUMNS = ("net_revenue", "value_rank", "value_tier", "is_key_account", "credit_grade", "final_tier",
                    "credit_hold", "customer_code")


def _record_restatement_diff(con, spec: RunSpec) -> int:
    """Compare a restated month with the previous successful run of that month, column by column."""
    con.execute("""create table if not exists audit.restatement_diffs (
        run_id varchar, previous_run_id varchar, month date, customer_id varchar, column_name varchar,
        previous_value varchar, restated_value varchar)""")
    con.execute("delete from audit.restatement_diffs where run_id = ?", [spec.run_id])
    previous = con.execute("""select run_id from audit.runs where month = ? and status = 'success' and run_id <> ?
                              order by finished_at desc limit 1""", [spec.month, spec.run_id]).fetchone()
    if previous is None:
        return 0
    unions = " union all ".join(
        f"select '{c}' as column_name, coalesce(p.customer_id, n.customer_id) as customer_id, "
        f"cast(p.{c} as varchar) as previous_value, cast(n.{c} as varchar) as restated_value "
        f"from prev p full join restated n using (customer_id) where p.{c} is distinct from n.{c}"
        for c in RESTATED_COLUMNS)
    return con.execute(f"""
        insert into audit.restatement_diffs
        with prev as (select * from audit.customer_tier_results where run_id = ?),
             restated as (select * from audit.customer_tier_results where run_id = ?)
        select ?, ?, ?, customer_id, column_name, previous_value, restated_value from ({unions})
    """, [previous[0], spec.run_id, spec.run_id, previous[0], spec.month]).fetchone()[0]


def mark_failed(run_id: str, warehouse: str, message: str) -> None:
    """on_failure_callback: record why the run failed (the CLI prints it). The message may quote row
    values: e-mail addresses and phone numbers are scrubbed out (tiering.pii), as it is published
    to PostgreSQL's audit schema."""
    from tiering.pii import scrub

    message = scrub(message)
    con = connect(warehouse)
    try:
        ensure_schema(con)
        con.execute("update audit.runs set status = 'failed', finished_at = ?, message = ? "
                    "where run_id = ? and status <> 'failed'", [_now(), message[:4000], run_id])
    finally:
        con.close()


def month_summary(spec: RunSpec) -> dict:
    con = connect(spec.warehouse, read_only=False)
    try:
        tiers = con.execute("""
            select final_tier, customer_count, net_revenue, revenue_share, value_measure
            from marts.tier_summary_monthly where month = ? order by final_tier""", [spec.month]).fetchall()
        quarantined = con.execute("""
            select source_table, count(*) from quarantine.rejected_rows where run_id = ?
            group by 1 order by 1""", [spec.run_id]).fetchall()
        restated = tiers_changed = None
        if spec.restate:
            restated, tiers_changed = con.execute(
                "select count(*), count(distinct customer_id) filter (where column_name = 'final_tier') "
                "from audit.restatement_diffs where run_id = ?", [spec.run_id]).fetchone()
    finally:
        con.close()
    return {
        "restatement_changes": restated,
        "restatement_final_tier_changes": tiers_changed,   # customers whose final tier the restatement changed
        "month": spec.month_text,
        "run_id": spec.run_id,
        # what the tiers were ranked by (rules file value.measure)
        "value_measure": tiers[0][4] if tiers else None,
        "tiers": [{"tier": t, "customers": n, "net_revenue": float(r), "revenue_share": s} for t, n, r, s, _ in tiers],
        "quarantined": dict(quarantined),
    }


def format_summary(summary: dict) -> str:
    parts = [f"{t['tier']}: {t['customers']} customers, {t['revenue_share']:.1%} of revenue" for t in summary["tiers"]]
    quarantined = sum(summary["quarantined"].values())
    text = f"{summary['month']}  " + "; ".join(parts) + f"; quarantined rows: {quarantined}"
    if summary.get("value_measure"):
        text += f"; ranked by {summary['value_measure']}"
    if summary.get("restatement_changes") is not None:
        text += (f"; restatement: {summary['restatement_changes']} value(s) changed against the previous run, "
                 f"{summary.get('restatement_final_tier_changes') or 0} customer(s) with another final tier "
                 f"(audit.restatement_diffs)")
    return text


def run_status(spec: RunSpec) -> tuple[str | None, str | None]:
    """(status, message) of a run in audit.runs."""
    if not Path(spec.warehouse).exists():
        return None, None
    con = connect(spec.warehouse)
    try:
        ensure_schema(con)
        row = con.execute("select status, message from audit.runs where run_id = ?", [spec.run_id]).fetchone()
    finally:
        con.close()
    return (row[0], row[1]) if row else (None, None)
