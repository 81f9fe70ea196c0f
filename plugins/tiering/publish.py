"""Publish what BI reads, only after every quality gate passed.

BI tools never read the live warehouse (DuckDB has one writer, and a reader
would block the pipeline): each successful run writes a fresh read-only copy of
the `marts` schema to `<warehouse dir>/published/tiering_bi.duckdb`, replaced
atomically. A failed run never reaches this step, so the published copy keeps
the previous good result.
"""
from __future__ import annotations

import os
from pathlib import Path

from tiering.runspec import RunSpec
from tiering.warehouse import connect


def published_path(warehouse: Path) -> Path:
    return Path(warehouse).resolve().parent / "published" / "tiering_bi.duckdb"


def publish_duckdb(spec: RunSpec) -> dict:
    target = published_path(spec.warehouse)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.duckdb")
    partial.unlink(missing_ok=True)
    con = connect(spec.warehouse)
    try:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "and table_catalog = current_database() order by 1").fetchall()]
        con.execute(f"attach '{partial}' as bi_copy")
        con.execute("create schema bi_copy.marts")
        rows = {}
        for table in tables:
            con.execute(f"create table bi_copy.marts.{table} as select * from marts.{table}")
            rows[table] = con.execute(f"select count(*) from bi_copy.marts.{table}").fetchone()[0]
        con.execute("detach bi_copy")
    finally:
        con.close()
    os.replace(partial, target)
    print(f"published {len(tables)} tables to {target} (read-only copy for BI)")
    return {"path": str(target), "rows": rows}


def publish_run(spec: RunSpec) -> dict:
    return {"duckdb": publish_duckdb(spec)}
