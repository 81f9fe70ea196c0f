"""Publish what BI reads, only after every quality gate passed.

BI tools never read the live warehouse (DuckDB has one writer, and a reader
would block the pipeline): each successful run writes a fresh read-only copy of
the `marts` schema to `<warehouse dir>/published/tiering_bi.duckdb`, replaced
atomically. A failed run never reaches this step, so the published copy keeps
the previous good result.

The copy is made in one of two ways, with the same result:
- full: every marts table copied into a new file;
- by month: the previous copy duplicated (a file copy) and, in the tables kept per
  month, only the months the run rebuilt replaced; the other tables, small or
  rebuilt whole by every run, copied whole. The cost then stays flat as months
  accumulate (24 months of 1M customers, 1 GB, a slow 2-core machine: 147 s as a full
  copy, 29 s by month).

By month is taken only when it is sure to give what a full copy would: the
previous copy is the one this warehouse published last (same size and
modification time as recorded in audit.publish_state), no dbt command other
than the publishing run's own has written since (audit.dbt_invocations, logged
by a dbt hook: an ad-hoc `tiering dbt`, a hand-run dbt or a run that failed after
dbt all force a full copy), the marts have the same tables and columns as the
copy, and no more than half of the copy's file is free blocks (the months replaced
leave some, which later writes reuse). Otherwise the step says why and copies in full.
Writes to marts other than by a dbt command (by hand in SQL, `dbt run-operation`)
are not seen: after one, `delete from audit.publish_state` and the next publish
copies in full.
"""
from __future__ import annotations

import logging
import shutil
import time
from datetime import date
from pathlib import Path

from tiering.files import replace_atomically
from tiering.runspec import RunSpec
from tiering.warehouse import connect

log = logging.getLogger(__name__)

# The marts kept per month whose other months a run never changes, and which months of them a run
# rebuilds: customer_tier_monthly and tier_alerts_monthly rebuild the run's month and the next month
# computed, crm_actions_monthly the run's month and every month computed after it (macros/months.sql);
# the others write the run's month only (unique_key month). A publish by month replaces the run's
# month and every month computed after it in all of them (in order: the run's month only). Any other
# marts table is copied whole (the aggregates kept per month too: a few hundred rows a month).
# tests/integration/test_publish.py compares a copy made by month with the marts after runs in and
# out of order.
BY_MONTH = ("customer_tier_monthly", "tier_alerts_monthly", "customer_credit_monthly",
            "customer_potential_monthly", "crm_actions_monthly")

STATE_DDL = """create table if not exists audit.publish_state (
    run_id varchar, month date, mode varchar, path varchar, file_size bigint, file_mtime_ns bigint,
    dbt_invocation_seq bigint, published_at timestamp)"""

FREE_LIMIT = 0.5  # a copy whose file is more than half free blocks is made again in full


def published_path(warehouse: Path) -> Path:
    return Path(warehouse).resolve().parent / "published" / "tiering_bi.duckdb"


def _marts_columns(con, catalog: str) -> dict[str, list[tuple[str, str]]]:
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in con.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema = 'marts' and table_catalog = ? order by table_name, ordinal_position",
            [catalog]).fetchall():
        tables.setdefault(table, []).append((column, data_type))
    return tables


def _invocation_state(con) -> tuple[int, list[tuple[int, str]]]:
    """The latest dbt invocation's sequence number, and the run ids of all of them (by seq)."""
    exists = con.execute("select count(*) from information_schema.tables where table_schema = 'audit' "
                         "and table_name = 'dbt_invocations' and table_catalog = current_database()").fetchone()[0]
    if not exists:
        return 0, []
    rows = con.execute("select seq, run_id from audit.dbt_invocations order by seq").fetchall()
    return (rows[-1][0] if rows else 0), rows


def _why_full(spec: RunSpec, target: Path, state, invocations: list) -> str | None:
    """Why this publish must copy everything, or None when copying by month gives the same copy."""
    if state is None:
        return "no earlier publish is recorded"
    published_by, _month, _path, size, mtime_ns, seq = state
    if published_by == spec.run_id:
        return "this run published before (a retried publish)"
    if not target.exists():
        return f"the previous copy {target} is not there"
    stat = target.stat()
    if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
        return f"{target} changed since it was published"
    others = sorted({run_id for s, run_id in invocations if s > seq and run_id != spec.run_id})
    if others:
        return f"dbt wrote the marts since the last publish for other runs than this one ({', '.join(others)})"
    return None


def _why_full_of_copy(con, columns: dict) -> str | None:
    """Why the previous copy, attached as bi_copy, cannot be updated by month."""
    if _marts_columns(con, "bi_copy") != columns:
        return "the marts' tables or columns changed since the last publish"
    total, free = con.execute("select total_blocks, free_blocks from pragma_database_size() "
                              "where database_name = 'bi_copy'").fetchone()
    if total and free > FREE_LIMIT * total:
        return f"{free / total:.0%} of the copy's file is free blocks"
    return None


def _months_rebuilt(con, spec: RunSpec) -> list[date]:
    """The run's month and every month computed after it: what the marts kept per month rebuild at
    most (macros/months.sql; a run out of order rebuilds later months of crm_actions_monthly)."""
    following = [r[0] for r in con.execute(
        "select distinct month from intermediate.int_customer_tier_months where month > ? order by 1",
        [spec.month]).fetchall()]
    return [spec.month] + following


def _copy_successful_runs(con, spec: RunSpec) -> None:
    """audit.successful_runs in the copy: every successful run (run_id, month, rule_version,
    finished_at), and the publishing run, whose gates all passed (finish_run marks it 'success'
    next). `tiering export` and `report` read the month's last successful run from it."""
    con.execute("create schema if not exists bi_copy.audit")
    con.execute("""create or replace table bi_copy.audit.successful_runs as
        select run_id, month, rule_version, finished_at from audit.runs where status = 'success' and run_id <> ?
        union all
        select run_id, month, rule_version, cast(current_timestamp as timestamp) from audit.runs where run_id = ?
        """, [spec.run_id, spec.run_id])


def publish_duckdb(spec: RunSpec, full: bool = False) -> dict:
    target = published_path(spec.warehouse)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    con = connect(spec.warehouse)
    try:
        con.execute(STATE_DDL)
        state = con.execute("select run_id, month, path, file_size, file_mtime_ns, dbt_invocation_seq "
                            "from audit.publish_state").fetchone()
        seq, invocations = _invocation_state(con)
        why_full = "asked for" if full else _why_full(spec, target, state, invocations)
        mode = "full"
        columns = _marts_columns(con, con.execute("select current_database()").fetchone()[0])
        # the copy is built under a staging name and replaces the published file in one rename
        # (tiering.files): BI sees the previous copy or the new one, never a partial one
        with replace_atomically(target) as partial:
            if why_full is None:
                shutil.copyfile(target, partial)
                con.execute(f"attach '{partial}' as bi_copy")
                why_full = _why_full_of_copy(con, columns)
                if why_full is None:
                    mode = "by month"
                else:
                    con.execute("detach bi_copy")
                    partial.unlink()
            if mode == "full":
                log.info(f"publish: full copy ({why_full})")
                con.execute(f"attach '{partial}' as bi_copy")
                con.execute("create schema bi_copy.marts")
            months = _months_rebuilt(con, spec) if mode == "by month" else []
            rows = {}
            for table in columns:
                if mode == "by month" and table in BY_MONTH:
                    listed = ", ".join(f"date '{m}'" for m in months)
                    con.execute(f"delete from bi_copy.marts.{table} where month in ({listed})")
                    con.execute(f"insert into bi_copy.marts.{table} select * from marts.{table} "
                                f"where month in ({listed})")
                else:
                    con.execute(f"create or replace table bi_copy.marts.{table} as select * from marts.{table}")
                rows[table] = con.execute(f"select count(*) from bi_copy.marts.{table}").fetchone()[0]
            _copy_successful_runs(con, spec)
            con.execute("detach bi_copy")
        stat = target.stat()
        con.execute("delete from audit.publish_state")
        con.execute("insert into audit.publish_state values (?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                    [spec.run_id, spec.month, mode, str(target), stat.st_size, stat.st_mtime_ns, seq])
    finally:
        con.close()
    detail = f" (months {', '.join(m.strftime('%Y-%m') for m in months)} replaced)" if months else ""
    how = "by month" if mode == "by month" else "as a full copy"
    log.info(f"published {len(columns)} tables to {target} {how}{detail} in {time.monotonic() - started:.1f} s "
             f"(read-only copy for BI)")
    return {"path": str(target), "mode": mode, "rows": rows, **({"reason_full": why_full} if mode == "full" else {})}


def publish_run(spec: RunSpec) -> dict:
    return {"duckdb": publish_duckdb(spec)}
