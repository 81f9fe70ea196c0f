"""`tiering export`: one month's marts for people without PostgreSQL (notebooks, spreadsheets).

    tiering export --month 2025-03 --out exports/

writes `exports/2025-03/`:

    <mart>.parquet            one file per mart, only that month's rows
    tiering_2025-03.duckdb    the same tables in schema `marts` (open it with read_only=True)
    manifest.json             month, rule_version, run_id, row counts, files
    README.md                 what the files are and how to open them

Rows per mart: tables with a `month` column keep that month's rows; `customer_tier_history`
keeps the intervals valid in the month (valid_from <= month < valid_to, or current); tables
without a month (`tier_policy`) are exported whole. The export reads the published read-only
copy BI reads (never the live warehouse), is built in a temporary folder next to the target and
then renamed into place, so a reader never sees a half-written export and re-exporting a month
replaces its folder atomically.
"""
from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from tiering.errors import TieringError
from tiering.files import replace_atomically
from tiering.publish import published_path
from tiering.runs import no_successful_run
from tiering.runspec import parse_month
from tiering.warehouse import connect

MANIFEST = "manifest.json"


def open_published(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published copy; a clear error when no month was published."""
    path = published_path(warehouse)
    if not path.exists():
        raise TieringError(f"published copy {path} not found; run a month first "
                           f"(`make run` or `tiering run --source DIR --month YYYY-MM --warehouse {warehouse}`)")
    return connect(path, read_only=True)


def require_month(con: duckdb.DuckDBPyConnection, month: date, where: Path) -> tuple[list[str], list[str]]:
    """The month's rule versions and run ids; TieringError naming the computed months if absent,
    and when the month has no successful run (the copy's audit.successful_runs, written by publish)
    or the copy holds another run of it than its last successful one."""
    rows = con.execute("""
        select distinct rule_version, run_id from marts.customer_tier_monthly where month = ? order by all
    """, [month]).fetchall()
    has_runs = con.execute("""select count(*) from information_schema.tables where table_schema = 'audit'
                              and table_name = 'successful_runs'""").fetchall()[0][0]
    if has_runs:
        last = con.execute("""select run_id from audit.successful_runs where month = ?
                              order by finished_at desc nulls last, run_id desc limit 1""", [month]).fetchall()
        if not last:
            raise no_successful_run(month, where, _available_months(con))
        last = last[0]
        if rows and {r[1] for r in rows} != {last[0]}:
            raise TieringError(f"{where} holds run(s) {', '.join(sorted({r[1] for r in rows}))} of {month:%Y-%m}, "
                               f"not its last successful run {last[0]}; run `tiering run --month {month:%Y-%m}` "
                               f"again to publish it")
    if not rows:
        raise TieringError(f"month {month:%Y-%m} is not in {where} (months available: {_available_months(con)}); "
                           f"run `tiering run --month {month:%Y-%m}` first")
    return sorted({r[0] for r in rows}), sorted({r[1] for r in rows})


def _available_months(con: duckdb.DuckDBPyConnection) -> str:
    months = [f"{m:%Y-%m}" for (m,) in con.execute(
        "select distinct month from marts.customer_tier_monthly order by month").fetchall()]
    return f"{months[0]}..{months[-1]} ({len(months)} months)" if months else "none"


def mart_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Every table of schema `marts` in the published copy with its column names."""
    tables: dict[str, list[str]] = {}
    for table, column in con.execute("""
        select table_name, column_name from information_schema.columns
        where table_schema = 'marts' and table_catalog = current_database()
        order by table_name, ordinal_position
    """).fetchall():
        tables.setdefault(table, []).append(column)
    return tables


def month_filter(columns: list[str]) -> tuple[str, str]:
    """The where clause selecting a table's rows for the month (parameter `$month`) and its description."""
    if "month" in columns:
        return "where month = $month", "month = the exported month"
    if {"valid_from", "valid_to"} <= set(columns):
        return ("where valid_from <= $month and (valid_to is null or valid_to > $month)",
                "intervals valid in the exported month")
    return "", "whole table"


def _readme(month_text: str, manifest: dict) -> str:
    lines = [f"# Customer tiering export {month_text}", "",
             f"Rules {', '.join(manifest['rule_versions'])}; run {', '.join(manifest['run_ids'])}; "
             f"exported {manifest['exported_at']} from {manifest['source']}.", "",
             "| table | rows | rows kept |", "|---|---|---|"]
    lines += [f"| `{name}` | {t['rows']} | {t['filter']} |" for name, t in manifest["tables"].items()]
    lines += ["", "Open the Parquet files with pandas (`pd.read_parquet('customer_tier_monthly.parquet')`) or",
              "the DuckDB file read-only:", "", "```python", "import duckdb",
              f"con = duckdb.connect('{manifest['duckdb']}', read_only=True)",
              "con.sql('select * from marts.tier_summary_monthly').show()", "```", "",
              "Definitions of every column: the dbt docs (`make docs`), models/marts/_marts__models.yml.",
              "No table holds personal data (names, e-mail addresses, phone numbers).", ""]
    return "\n".join(lines)


def _write(con: duckdb.DuckDBPyConnection, month: date, folder: Path, duckdb_name: str) -> dict[str, dict]:
    """Write every mart's month rows as Parquet into `folder` and into one DuckDB file there."""
    written: dict[str, dict] = {}
    out = duckdb.connect(str(folder / duckdb_name))
    try:
        out.execute("create schema marts")
        for table, columns in mart_tables(con).items():
            where, description = month_filter(columns)
            data = con.sql(f"select * from marts.{table} {where} order by all",
                           params={"month": month} if where else None).to_arrow_table()
            pq.write_table(data, folder / f"{table}.parquet", compression="zstd")
            out.register("export_rows", data)
            out.execute(f"create table marts.{table} as select * from export_rows")
            out.unregister("export_rows")
            written[table] = {"rows": data.num_rows, "file": f"{table}.parquet", "filter": description}
        out.execute("checkpoint")
    finally:
        out.close()
    return written


def export_month(warehouse: Path, month: date, out_dir: Path) -> dict:
    """Export `month` into `out_dir/<YYYY-MM>/` (replacing it atomically). Returns the manifest."""
    month_text = f"{month:%Y-%m}"
    source = published_path(warehouse)
    target = Path(out_dir) / month_text
    duckdb_name = f"tiering_{month_text}.duckdb"
    with replace_atomically(target) as staging:   # an earlier export of the month is swapped out
        staging.mkdir()
        con = open_published(warehouse)
        try:
            rule_versions, run_ids = require_month(con, month, source)
            tables = _write(con, month, staging, duckdb_name)
        finally:
            con.close()
        manifest = {"month": month_text, "rule_versions": rule_versions, "run_ids": run_ids,
                    "rule_version": rule_versions[0] if len(rule_versions) == 1 else None,
                    "run_id": run_ids[0] if len(run_ids) == 1 else None,
                    "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "source": str(source), "duckdb": duckdb_name, "tables": tables}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (staging / "README.md").write_text(_readme(month_text, manifest))
        (staging / duckdb_name).chmod(0o444)  # a snapshot: readers open it read-only
    manifest["path"] = str(target)
    return manifest


def cli_export(args) -> None:
    """`tiering export --month M --out DIR [--warehouse FILE]`."""
    month = parse_month(args.month)
    started = time.monotonic()
    manifest = export_month(Path(args.warehouse), month, Path(args.out))
    print(f"exported {manifest['month']} (rules {', '.join(manifest['rule_versions'])}, "
          f"run {', '.join(manifest['run_ids'])}) to {manifest['path']} "
          f"in {time.monotonic() - started:.1f} s:")
    for table in manifest["tables"].values():
        print(f"  {table['file']:<36} {table['rows']:>8} rows  ({table['filter']})")
    print(f"  {manifest['duckdb']:<36} the same tables in schema marts (open read-only)")
    print(f"  {MANIFEST:<36} row counts, rule version, run id; README.md")
