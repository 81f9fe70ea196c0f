"""`tiering migrate`: move a warehouse built by the core before the change log (issue 33) to this one.

The previous core loaded every run's landed batch into `raw` and kept staging in place; this one
reads the change log beside the warehouse (tiering.landing) and types it in dbt. A warehouse built
by the previous core therefore holds tables this core never reads, and a quarantine table of
another layout. The migration, one DuckDB transaction, idempotent:

    raw.*  (customers ... tier_overrides, batch_rows, batch_lineage, the view batch_members)   dropped
    staging.stg_raw__<table>                  dropped (now staging.stg_landing__<table> and
                                              intermediate.int_<table>__as_of, built by the next run)
    audit.staging_state                       dropped
    intermediate.int_orders__in_reporting_currency, intermediate.int_invoices__settlement
                                              dropped when they carry the previous core's marker
                                              columns (converted_before, paid_before): plain tables
                                              now, rebuilt whole by every run
    views over the dropped tables (intermediate.int_invoice_ledger): dropped, dbt recreates them
    quarantine.rejected_rows                  rewritten in the layout of the dbt model that now owns
                                              it (models/quarantine/rejected_rows.sql): every row
                                              kept with its values; `row_key` (a key into raw)
                                              dropped, `landing_partition` added (null: those rows
                                              were quarantined before the change log existed)
    audit.load_batches                        kept as it is, as history: the batches the runs
                                              before the migration read (no run writes it any
                                              more; a run's inputs are now its manifest,
                                              landing/_runs/<run_id>.json)

Everything else stays as it is, row for row: audit.customer_tier_results, audit.runs (the old
runs keep their landing_dir, the folder landing/<run_id>/ they read), audit.dq_results, every
month of the marts and of intermediate.int_customer_tier_months, the customer code registry
(intermediate.int_customer_code_registry: append-only, so the codes given stay), schema
`potential`, and the old landing folders landing/<run_id>/ (listed in the summary: they hold the
source rows, personal data included, as each old run read them; `tiering forget` erases a person
in their customers.parquet too; delete them when your retention allows). PostgreSQL is not
touched: the next published month adds its own rows.

Nothing is landed here. The next run of any month lands the change log from the source (its
catalog starts empty) and computes the month as before; the months computed before keep their
rows until they are run again. A month run by the previous core is not compared with the change
log (tiering.landing.check_reproduces: it read no manifest).

`tiering run` refuses a warehouse of the previous core (refuse_old_core) with the command to run.
The warehouse file does not shrink when raw is dropped: DuckDB reuses the freed blocks.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tiering.errors import TieringError

log = logging.getLogger(__name__)

MIGRATION = "issue-33-change-log"

# The previous core's staging tables (one per source table) and the intermediate tables it built in
# place, with the marker column that identifies its build.
OLD_STAGING = ("stg_raw__customers", "stg_raw__fx_rates", "stg_raw__invoices", "stg_raw__orders",
               "stg_raw__payments", "stg_raw__tier_overrides")
OLD_IN_PLACE = {"int_orders__in_reporting_currency": "converted_before", "int_invoices__settlement": "paid_before"}

# quarantine.rejected_rows as the dbt model builds it (models/quarantine/rejected_rows.sql), in its
# column order and types; the previous core's rows are copied into it.
QUARANTINE_COLUMNS = (
    ("run_id", "varchar", "run_id"),
    ("month", "date", "month"),
    ("source_table", "varchar", "source_table"),
    ("source_file", "varchar", "source_file"),
    ("source_line", "bigint", "source_line"),
    ("landing_partition", "varchar", "null"),
    ("rule", "varchar", "rule"),
    ("reason", "varchar", "reason"),
    ("record", "json", "record"),
    ("quarantined_at", "timestamp with time zone", "quarantined_at"),   # naive UTC before: the session is UTC
)

# What the migration keeps and checks row for row (counts before = after, in the transaction).
KEPT = ("audit.customer_tier_results", "audit.runs", "audit.load_batches", "audit.dq_results",
        "audit.rule_versions", "intermediate.int_customer_tier_months", "intermediate.int_customer_code_registry",
        "quarantine.rejected_rows")


@dataclass
class Plan:
    """What the migration does to one warehouse: SQL statements with what each is for."""

    steps: list[tuple[str, list[str]]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)      # relation -> rows it held

    def add(self, what: str, *statements: str) -> None:
        self.steps.append((what, list(statements)))

    @property
    def needed(self) -> bool:
        return bool(self.steps)


def _relations(con) -> dict[str, str]:
    """{schema.name: 'BASE TABLE' | 'VIEW'} of the warehouse."""
    return {f"{s}.{t}": kind for s, t, kind in con.execute(
        "select table_schema, table_name, table_type from information_schema.tables "
        "where table_catalog = current_database()").fetchall()}


def _columns(con, relation: str) -> list[str]:
    schema, name = relation.split(".")
    return [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "and table_catalog = current_database() order by ordinal_position", [schema, name]).fetchall()]


def _count(con, relation: str) -> int:
    return con.execute(f"select count(*) from {relation}").fetchall()[0][0]


def old_core_objects(con) -> list[str]:
    """What in this warehouse only the previous core built (empty: nothing to migrate)."""
    relations = _relations(con)
    found = ["schema raw"] if any(r.startswith("raw.") for r in relations) else []
    found += [f"staging.{t}" for t in OLD_STAGING if f"staging.{t}" in relations]
    if "audit.staging_state" in relations:
        found.append("audit.staging_state")
    found += [f"intermediate.{t}" for t, marker in OLD_IN_PLACE.items()
              if f"intermediate.{t}" in relations and marker in _columns(con, f"intermediate.{t}")]
    if "quarantine.rejected_rows" in relations and \
            _columns(con, "quarantine.rejected_rows") != [c for c, _, _ in QUARANTINE_COLUMNS]:
        found.append("quarantine.rejected_rows (previous layout)")
    return found


def plan(con) -> Plan:
    """The statements that bring the warehouse to this core (none when it is there already)."""
    relations = _relations(con)
    result = Plan()
    dropped_names = []
    raw = sorted(r for r, kind in relations.items() if r.startswith("raw."))
    if raw:
        result.dropped.update({r: _count(con, r) for r in raw if relations[r] == "BASE TABLE"})
        result.add("the loaded source rows and their batch lineage (schema raw)", "drop schema raw cascade")
        dropped_names += ["raw."]
    for table in OLD_STAGING:
        if f"staging.{table}" in relations:
            result.dropped[f"staging.{table}"] = _count(con, f"staging.{table}")
            result.add(f"the previous staging table staging.{table}", f"drop table staging.{table}")
            dropped_names.append(table)
    if "audit.staging_state" in relations:
        result.dropped["audit.staging_state"] = _count(con, "audit.staging_state")
        result.add("the state of the staging built in place (audit.staging_state)", "drop table audit.staging_state")
    for table, marker in OLD_IN_PLACE.items():
        relation = f"intermediate.{table}"
        if relation in relations and marker in _columns(con, relation):
            result.dropped[relation] = _count(con, relation)
            result.add(f"{relation}, built in place by the previous core ({marker}): a plain table now, "
                       f"rebuilt by the next run", f"drop table {relation}")
            dropped_names.append(table)
    if dropped_names:
        # dbt's views over what is dropped (intermediate.int_invoice_ledger): recreated by the next run
        for schema, name, sql in con.execute(
                "select schema_name, view_name, sql from duckdb_views() where not internal "
                "and database_name = current_database() and schema_name <> 'raw'").fetchall():
            if any(n in sql for n in dropped_names):
                result.add(f"the view {schema}.{name} over a dropped table (dbt recreates it)",
                           f"drop view {schema}.{name}")
    if "quarantine.rejected_rows" in relations:
        columns = _columns(con, "quarantine.rejected_rows")
        if columns != [c for c, _, _ in QUARANTINE_COLUMNS]:
            select = ", ".join(f"cast({source if source == 'null' or source in columns else 'null'} as {kind}) "
                               f"as {name}" for name, kind, source in QUARANTINE_COLUMNS)
            result.add("quarantine.rejected_rows in the dbt model's layout (row_key dropped, landing_partition "
                       "added; every row kept)",
                       f"create table quarantine.rejected_rows__migrated as select {select} "
                       f"from quarantine.rejected_rows",
                       "drop table quarantine.rejected_rows",
                       "alter table quarantine.rejected_rows__migrated rename to rejected_rows")
    if result.needed and "audit.load_batches" in relations:
        result.add("audit.load_batches kept as the history of the runs before the migration",
                   "comment on table audit.load_batches is 'History: the batches read by the runs before the "
                   "change log (tiering migrate); no run writes it any more. A run''s inputs are its manifest, "
                   "landing/_runs/<run_id>.json.'")
    return result


def old_landing_folders(root: Path) -> list[Path]:
    """The previous core's per-run landing folders under a landing root (<root>/<run_id>/ with a
    _manifest.json). `tiering forget` erases personal data in their customers.parquet too."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "_manifest.json").is_file())


def _size(folders: list[Path]) -> int:
    return sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())


def migrate(warehouse: Path | str, dry_run: bool = False) -> dict:
    """Migrate the warehouse (see the module docstring); returns the summary (also recorded in
    audit.migrations). With `dry_run`, only says what it would do."""
    from tiering.locks import warehouse_lock
    from tiering.settings import landing_root
    from tiering.warehouse import connect, transaction

    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise TieringError(f"warehouse {warehouse} not found: nothing to migrate (a new warehouse needs none)")
    with warehouse_lock(warehouse, "tiering migrate", kind="run", wait=False):
        con = connect(warehouse)
        try:
            todo = plan(con)
            relations = _relations(con)
            kept = [r for r in KEPT if r in relations]
            before = {r: _count(con, r) for r in kept}
            folders = old_landing_folders(landing_root(warehouse))
            summary = {
                "warehouse": str(warehouse), "migration": MIGRATION, "needed": todo.needed, "dry_run": dry_run,
                "steps": [what for what, _ in todo.steps], "dropped_rows": todo.dropped, "kept_rows": before,
                "old_landing_folders": len(folders), "old_landing_bytes": _size(folders),
            }
            if not todo.needed or dry_run:
                return summary
            with transaction(con):
                for _, statements in todo.steps:
                    for statement in statements:
                        con.execute(statement)
                after = {r: _count(con, r) for r in kept}
                if after != before:   # cannot happen by construction; the transaction rolls back if it does
                    raise TieringError(f"migration of {warehouse} stopped, nothing changed: rows kept differ "
                                       f"({before} before, {after} after)")
                con.execute("create table if not exists audit.migrations (migration varchar, migrated_at timestamp, "
                            "summary json)")
                con.execute("insert into audit.migrations values (?, ?, ?)",
                            [MIGRATION, datetime.now(UTC).replace(tzinfo=None), json.dumps(summary)])
            con.execute("checkpoint")
        finally:
            con.close()
    log.info(f"migrated {warehouse}: {format_summary(summary)}")
    return summary


def format_summary(summary: dict) -> str:
    where = summary["warehouse"]
    if not summary["needed"]:
        return f"{where} needs no migration: it holds nothing of the previous core"
    head = "would migrate" if summary["dry_run"] else "migrated"
    lines = [f"{head} {where} to the change-log core ({summary['migration']}):"]
    lines += [f"  - {what}" for what in summary["steps"]]
    dropped = ", ".join(f"{r} {n}" for r, n in summary["dropped_rows"].items())
    lines.append(f"  rows dropped: {dropped or 'none'}")
    lines.append("  rows kept: " + ", ".join(f"{r} {n}" for r, n in summary["kept_rows"].items()))
    if summary["old_landing_folders"]:
        lines.append(f"  left alone: {summary['old_landing_folders']} landing folder(s) of the previous core "
                     f"(landing/<run_id>/, {summary['old_landing_bytes'] / 1e6:.1f} MB): what those runs read, "
                     f"personal data included (tiering forget erases there too); delete them when your retention "
                     f"allows")
    lines.append("  next: run any month (tiering run / backfill): it lands the change log from the source and "
                 "computes the month as before; PostgreSQL is untouched until then")
    return "\n".join(lines)


def refuse_old_core(con, warehouse: Path | str) -> None:
    """The one-line refusal of a run on a warehouse the previous core built."""
    found = old_core_objects(con)
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise TieringError(f"warehouse {warehouse} was built by the previous core ({shown}): run `tiering migrate "
                           f"--warehouse {warehouse}` once first; it keeps every result and the marts' history "
                           f"(docs/upgrading.md)")


CHAINED_STAGING = ("stg_landing__orders", "stg_landing__invoices", "stg_landing__payments")


def drop_unchained_staging(con) -> list[str]:
    """Drop the typed change log of orders, invoices and payments when it was typed before each
    version named the one before it (no column previous_updated_at): the run types every partition
    again, from the change log, which nothing else changes. Returns the tables dropped."""
    found = [t for (t,) in con.execute(
        "select table_name from information_schema.tables where table_schema = 'staging' and table_name in (?, ?, ?) "
        "and table_name not in (select table_name from information_schema.columns "
        "where table_schema = 'staging' and column_name = 'previous_updated_at')", list(CHAINED_STAGING)).fetchall()]
    for table in found:
        con.execute(f"drop table staging.{table}")
        log.info(f"staging.{table} was typed before the version chain: dropped, the run types the change log again")
    return found


def cli_migrate(args) -> None:
    summary = migrate(args.warehouse, dry_run=args.dry_run)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
