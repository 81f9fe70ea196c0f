"""The marts change only when the whole month succeeded.

A run's dbt build writes the marts models into the schema `marts_pending` (dbt var `marts_schema`,
macros/generate_schema_name.sql), not into `marts`:

    prepare(spec)   before transform_marts: `marts_pending` emptied, and each marts table kept per
                    month (a `month` column) seeded with the live table's months from the one
                    computed before the run's month on (in order: one month). The incremental models
                    then find themselves there (is_incremental), replace the months the run rebuilds
                    (macros/months.sql) and read the month before, as they do in `marts`.
    swap_in(spec)   at the start of `publish`, after the dbt tests and the marts gate passed on those
                    rows: in ONE DuckDB transaction, every per-month mart's months from the run's month
                    on are replaced by the built rows, the other marts (tier_policy,
                    customer_tier_history: rebuilt whole by every run) replaced whole, and
                    `marts_pending` dropped.

A run that fails (a dbt test, the marts gate, SIGTERM, a crash) therefore leaves `marts` exactly as
the previous successful run left it; the next run empties `marts_pending` again. Only the months a
run rebuilds are copied, twice (built, then swapped), never the marts' history. Ad-hoc `tiering dbt`
commands build `marts` directly (the var's default). The pipeline runs on DuckDB only; on PostgreSQL
and Spark (tiering.targets runs the models there) the var is not set and dbt builds `marts` as before.
"""
from __future__ import annotations

import logging

from tiering.runspec import RunSpec
from tiering.warehouse import connect, transaction

log = logging.getLogger(__name__)

PENDING_SCHEMA = "marts_pending"


def _tables(con, schema: str) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for table, column in con.execute(
            "select c.table_name, c.column_name from information_schema.columns c "
            "join information_schema.tables t using (table_catalog, table_schema, table_name) "
            "where c.table_schema = ? and c.table_catalog = current_database() and t.table_type = 'BASE TABLE' "
            "order by c.table_name, c.ordinal_position", [schema]).fetchall():
        tables.setdefault(table, []).append(column)
    return tables


def _schema_exists(con, schema: str) -> bool:
    return bool(con.execute("select count(*) from information_schema.schemata where schema_name = ? "
                            "and catalog_name = current_database()", [schema]).fetchall()[0][0])


def _first_month_read(con, spec: RunSpec):
    """The month computed before the run's month (the per-month marts read it), else the run's month."""
    exists = con.execute("select count(*) from information_schema.tables where table_schema = 'intermediate' "
                         "and table_name = 'int_customer_tier_months' and table_catalog = current_database()"
                         ).fetchall()[0][0]
    previous = con.execute("select max(month) from intermediate.int_customer_tier_months where month < ?",
                           [spec.month]).fetchall()[0][0] if exists else None
    return previous or spec.month


def _type_of(con, table: str, column: str) -> str:
    return con.execute("select data_type from information_schema.columns where table_schema = ? and table_name = ? "
                       "and column_name = ? and table_catalog = current_database()",
                       [PENDING_SCHEMA, table, column]).fetchall()[0][0]


def prepare(spec: RunSpec) -> dict:
    """Empty `marts_pending` and seed its per-month tables with the months the run reads or rebuilds."""
    con = connect(spec.warehouse)
    try:
        con.execute(f"drop schema if exists {PENDING_SCHEMA} cascade")
        con.execute(f"create schema {PENDING_SCHEMA}")
        since = _first_month_read(con, spec)
        seeded = {}
        for table, columns in _tables(con, "marts").items():
            if "month" in columns:
                con.execute(f"create table {PENDING_SCHEMA}.{table} as select * from marts.{table} where month >= ?",
                            [since])
                seeded[table] = con.execute(f"select count(*) from {PENDING_SCHEMA}.{table}").fetchall()[0][0]
    finally:
        con.close()
    return {"schema": PENDING_SCHEMA, "seeded_from": str(since), "seeded_rows": seeded}


def pending_exists(warehouse) -> bool:
    con = connect(warehouse, read_only=True)
    try:
        return _schema_exists(con, PENDING_SCHEMA)
    finally:
        con.close()


def swap_in(spec: RunSpec) -> dict:
    """Replace the run's months of every per-month mart, and the whole other marts, by the rows built
    in `marts_pending`, in one transaction. Nothing to do when it is gone (a retried publish after
    the swap committed)."""
    con = connect(spec.warehouse)
    try:
        if not _schema_exists(con, PENDING_SCHEMA):
            log.info(f"marts: nothing to swap in ({PENDING_SCHEMA} is not there: swapped in already)")
            return {"swapped": []}
        built = _tables(con, PENDING_SCHEMA)
        live = _tables(con, "marts")
        with transaction(con):
            con.execute("create schema if not exists marts")
            for table, columns in built.items():
                if table in live and "month" in columns and "month" in live[table]:
                    for column in (c for c in columns if c not in live[table]):   # a column new to the model
                        con.execute(f"alter table marts.{table} add column {column} {_type_of(con, table, column)}")
                    con.execute(f"delete from marts.{table} where month >= ?", [spec.month])
                    con.execute(f"insert into marts.{table} by name "
                                f"select * from {PENDING_SCHEMA}.{table} where month >= ?", [spec.month])
                else:   # rebuilt whole by every run (or new)
                    con.execute(f"create or replace table marts.{table} as select * from {PENDING_SCHEMA}.{table}")
            con.execute(f"drop schema {PENDING_SCHEMA} cascade")
    finally:
        con.close()
    log.info(f"marts: the run's rows of {len(built)} tables swapped in from {PENDING_SCHEMA} "
             f"(months from {spec.month_text} on; one transaction)")
    return {"swapped": sorted(built)}
