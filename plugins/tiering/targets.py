"""The same dbt project on another target (PostgreSQL, Spark): copy the sources, build, compare.

DuckDB stays the pipeline's warehouse. To check that the models are portable, the tables the
dbt sources read (the `raw` schema that `tiering.load` wrote) are copied from a DuckDB warehouse
to the other target, `dbt build --target <target>` runs for every month the warehouse computed,
with the very vars of that month's run (same run id, same rules content from
`audit.rule_versions`), and the marts are compared row by row with DuckDB's.

    python -m tiering.targets --target postgres --warehouse warehouse/tiering.duckdb

prints one JSON object (seconds per step, rows per mart, differences) and exits 1 when a mart
differs. dbt runs in this process (one import and one parse for all months); run it in a
process of its own (the tests do), since dbt keeps adapter state per process.
Connection settings: TIERING_PG_HOST/PORT/USER/PASSWORD and TIERING_PG_DBT_DATABASE (the
database is created when missing; its source and model schemas are replaced), Spark:
TIERING_SPARK_WAREHOUSE_DIR (see dbt_project/profiles.yml).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import yaml

from tiering.errors import TieringError
from tiering.runspec import RunSpec, add_months
from tiering.settings import DBT_PROJECT_DIR

TARGETS = ("postgres", "spark")
# the marts compared, with the columns that identify a row
COMPARED_MARTS = {
    "customer_tier_monthly": ("customer_id", "month"),
    "customer_credit_monthly": ("customer_id", "month"),
    "tier_summary_monthly": ("month", "final_tier"),
    "customer_tier_history": ("customer_id", "valid_from"),
}
FLOAT_TOLERANCE = 1e-9
# What a portability build selects by default: the compared marts with everything upstream, and
# the other marts and the audit model of the core pipeline (`--core-only`). By default the whole
# project is built (models are portable when written with the macros of macros/cross_db.sql).
CORE_SELECTION = ("+customer_tier_monthly", "+customer_credit_monthly", "+tier_summary_monthly",
                  "+customer_tier_history", "customer_tier_results", "pareto_curve_monthly",
                  "tier_alerts_monthly", "tier_migration_monthly", "tier_policy")
# schemas dbt builds (generate_schema_name keeps them as named); replaced on the target
MODEL_SCHEMAS = ("staging", "intermediate", "marts", "audit")


class TargetError(TieringError):
    """The other target cannot be reached or the build there failed."""


@dataclass(frozen=True)
class MonthRun:
    """A successful run of the DuckDB warehouse whose vars are replayed on the target."""
    month: date
    run_id: str
    rules: dict
    rule_version: str


# --- what to copy ----------------------------------------------------------------------------

def source_schemas(project_dir: Path = DBT_PROJECT_DIR) -> list[str]:
    """The schemas the dbt sources read (every `sources:` entry of the project's yml files)."""
    schemas = set()
    for path in sorted((project_dir / "models").rglob("*.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for source in doc.get("sources") or []:
            schemas.add(source.get("schema") or source["name"])
    return sorted(schemas)


def month_runs(warehouse: Path) -> list[MonthRun]:
    """The latest successful run of every month in the warehouse, oldest month first."""
    from tiering.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
        rows = con.execute("""
            select runs.month, runs.run_id, runs.rule_version, cast(rules.content as varchar)
            from audit.runs as runs
            inner join audit.rule_versions as rules on rules.rule_version = runs.rule_version
            where runs.status = 'success'
            qualify row_number() over (partition by runs.month order by runs.finished_at desc) = 1
            order by runs.month
        """).fetchall()
    finally:
        con.close()
    if not rows:
        raise TargetError(f"no successful run in {warehouse}: run `tiering run` (or backfill) first")
    return [MonthRun(month=m, run_id=r, rule_version=v, rules=json.loads(c)) for m, r, v, c in rows]


def month_vars(run: MonthRun) -> dict:
    """The dbt vars of that run (as tiering.dbt_runner.dbt_vars builds them)."""
    spec = RunSpec(month=run.month, run_id=run.run_id, source_dir=Path("."))
    return {
        "month": f"{spec.month}",
        "next_month": f"{spec.next_month}",
        "as_of_cutoff": spec.as_of_cutoff,
        "month_last_day": f"{spec.next_month - timedelta(days=1)}",
        "value_window_start": f"{add_months(spec.month, 1 - run.rules['value']['window_months'])}",
        "credit_window_start": f"{add_months(spec.month, 1 - run.rules['credit']['window_months'])}",
        "run_id": run.run_id,
        "batch_id": run.run_id,
        "rule_version": run.rule_version,
        "rules": run.rules,
    }


def _duckdb_tables(con, schemas: list[str]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(schema, table, [(column, duckdb type)]) of every base table in the schemas."""
    tables = con.execute("""
        select table_schema, table_name from information_schema.tables
        where table_type = 'BASE TABLE' and table_schema in (select unnest(?))
        order by table_schema, table_name
    """, [schemas]).fetchall()
    result = []
    for schema, table in tables:
        columns = con.execute("""
            select column_name, data_type from information_schema.columns
            where table_schema = ? and table_name = ? order by ordinal_position
        """, [schema, table]).fetchall()
        result.append((schema, table, columns))
    return result


# --- PostgreSQL ------------------------------------------------------------------------------

def pg_settings() -> dict:
    """Connection settings from the environment (the same variables profiles.yml reads)."""
    return {
        "host": os.environ.get("TIERING_PG_HOST", "127.0.0.1"),
        "port": int(os.environ.get("TIERING_PG_PORT", "5432")),
        "user": os.environ.get("TIERING_PG_USER", "postgres"),
        "password": os.environ.get("TIERING_PG_PASSWORD", ""),
        "dbname": os.environ.get("TIERING_PG_DBT_DATABASE", "tiering_dbt_test"),
    }


def pg_connect(dbname: str | None = None):
    import psycopg

    settings = pg_settings()
    if dbname:
        settings["dbname"] = dbname
    try:
        return psycopg.connect(**{k: v for k, v in settings.items() if v != ""}, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise TargetError(f"PostgreSQL {settings['host']}:{settings['port']} (database {settings['dbname']}, "
                          f"user {settings['user']}) is not reachable: {str(exc).strip().splitlines()[0]}; "
                          "start it or set TIERING_PG_HOST/PORT/USER/PASSWORD") from exc


def pg_reachable() -> str | None:
    """None when PostgreSQL answers, otherwise why not (for pytest.skip)."""
    try:
        pg_connect("postgres").close()
    except TargetError as exc:
        return str(exc)
    return None


def ensure_pg_database() -> str:
    """Create the dbt test database when missing; return its name."""
    from psycopg import sql

    name = pg_settings()["dbname"]
    con = pg_connect("postgres")
    con.autocommit = True
    try:
        if not con.execute("select 1 from pg_database where datname = %s", [name]).fetchone():
            con.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    finally:
        con.close()
    return name


def copy_to_postgres(warehouse: Path, batch_rows: int = 50_000) -> dict:
    """Replace the source schemas (and drop the model schemas) in the dbt test database with the
    warehouse's source tables. Returns rows copied per table."""
    from psycopg import sql

    from tiering.pg_publish import copy_arrow, pg_type
    from tiering.warehouse import connect

    ensure_pg_database()
    schemas = source_schemas()
    duck = connect(warehouse, read_only=True)
    pg = pg_connect()
    copied = {}
    try:
        for schema in (*schemas, *MODEL_SCHEMAS):
            pg.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
        for schema in schemas:
            pg.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        for schema, table, columns in _duckdb_tables(duck, schemas):
            name = sql.Identifier(schema, table)
            pg.execute(sql.SQL("create table {} ({})").format(name, sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(pg_type(t))) for c, t in columns)))
            batches = duck.sql(f'select * from "{schema}"."{table}"').to_arrow_reader(batch_rows)
            copied[f"{schema}.{table}"] = copy_arrow(pg, name, [c for c, _ in columns], batches)
        pg.commit()
    finally:
        pg.close()
        duck.close()
    return copied


def _pg_rows(table: str, columns: list[str], order: tuple[str, ...], where: str) -> list[tuple]:
    from psycopg import sql

    pg = pg_connect()
    try:
        return pg.execute(sql.SQL("select {} from {} where {} order by {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier("marts", table), sql.SQL(where),
            sql.SQL(", ").join(sql.Identifier(c) for c in order))).fetchall()
    finally:
        pg.close()


# --- Spark (session mode: the dbt process owns the SparkSession) -----------------------------

def spark_session():
    """The local SparkSession dbt-spark's session mode uses (getOrCreate returns this same one)."""
    from pyspark.sql import SparkSession

    warehouse_dir = Path(os.environ.get("TIERING_SPARK_WAREHOUSE_DIR", "/tmp/tiering-spark")).resolve()
    return (SparkSession.builder.master("local[2]").appName("tiering-dbt")
            .config("spark.sql.warehouse.dir", str(warehouse_dir / "warehouse"))
            .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse_dir}")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.enabled", "false")
            .enableHiveSupport().getOrCreate())


_SPARK_TYPES = {"VARCHAR": "string", "BIGINT": "bigint", "INTEGER": "int", "BOOLEAN": "boolean",
                "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp",
                "DOUBLE": "double", "JSON": "string"}


def _spark_type(duckdb_type: str) -> str:
    if duckdb_type.startswith("DECIMAL"):
        return duckdb_type.lower()
    return _SPARK_TYPES.get(duckdb_type, "string")


def copy_to_spark(warehouse: Path) -> dict:
    """Replace the source databases in the local Spark warehouse with the warehouse's source tables
    (through parquet files written by DuckDB: fast, no row-by-row conversion in Python)."""
    import tempfile

    from tiering.warehouse import connect

    spark = spark_session()
    schemas = source_schemas()
    duck = connect(warehouse, read_only=True)
    copied = {}
    try:
        for schema in (*schemas, *MODEL_SCHEMAS):
            spark.sql(f"drop database if exists {schema} cascade")
        for schema in schemas:
            spark.sql(f"create database {schema}")
        with tempfile.TemporaryDirectory(prefix="tiering-spark-copy-") as scratch:
            for schema, table, columns in _duckdb_tables(duck, schemas):
                path = f"{scratch}/{schema}.{table}.parquet"
                texts = ", ".join(f'cast("{c}" as varchar) as "{c}"' if t == "JSON" else f'"{c}"' for c, t in columns)
                duck.execute(f"copy (select {texts} from \"{schema}\".\"{table}\") to '{path}' (format parquet)")
                casts = [f"cast(`{c}` as {_spark_type(t)}) as `{c}`" for c, t in columns]
                data = spark.read.parquet(path).selectExpr(*casts)
                data.write.format("parquet").saveAsTable(f"{schema}.{table}")
                copied[f"{schema}.{table}"] = spark.table(f"{schema}.{table}").count()
    finally:
        duck.close()
    return copied


def _spark_rows(table: str, columns: list[str], order: tuple[str, ...], where: str) -> list[tuple]:
    spark = spark_session()
    frame = spark.sql(f"select {', '.join(columns)} from marts.{table} where {where} order by {', '.join(order)}")
    return [tuple(row) for row in frame.collect()]


# --- build and compare -----------------------------------------------------------------------

def build(target: str, runs: list[MonthRun], select: tuple[str, ...] | None = CORE_SELECTION,
          test_every_month: bool = True) -> list[dict]:
    """`dbt build --target <target>` for every run's month, oldest first, in this process.
    `test_every_month=False`: `dbt run` for the earlier months and `dbt build` (models, data and
    unit tests) only for the last one (the full-history tests then see every month)."""
    from dbt.cli.main import dbtRunner

    os.environ["TIERING_DBT_TARGET"] = target
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("DBT_VERSION_CHECK", "false")
    base = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target", target,
            "--target-path", f"target-{target}", "--log-path", str(DBT_PROJECT_DIR / "logs" / target)]
    selection = ["--select", *select, "--indirect-selection", "cautious"] if select else []
    manifest = None
    timings = []
    for index, run in enumerate(runs):
        command = "build" if test_every_month or index == len(runs) - 1 else "run"
        started = time.monotonic()
        args = [*base, "--vars", json.dumps(month_vars(run))]
        if manifest is None:  # parse once (only the rules change what is parsed)
            parsed = dbtRunner().invoke(["parse", *args])
            if not parsed.success:
                raise TargetError(f"dbt parse failed on {target}: {parsed.exception}")
            manifest = parsed.result
        result = dbtRunner(manifest=manifest).invoke([command, *args, *selection])
        if not result.success:
            failed = [f"{r.node.name}: {(r.message or '').strip()[:300]}"
                      for r in getattr(result.result, "results", None) or []
                      if str(getattr(r.status, "value", r.status)) in ("error", "fail", "runtime error")]
            raise TargetError(f"dbt {command} failed on {target} for {run.month:%Y-%m}: "
                              f"{'; '.join(failed) or result.exception}"[:3000])
        timings.append({"month": f"{run.month:%Y-%m}", "command": command,
                        "seconds": round(time.monotonic() - started, 2), "nodes": len(result.result.results)})
    return timings


def _same(left, right) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    numbers = (int, float, Decimal)
    if isinstance(left, numbers) and isinstance(right, numbers):
        if isinstance(left, float) or isinstance(right, float):
            return abs(float(left) - float(right)) <= FLOAT_TOLERANCE * max(1.0, abs(float(left)))
        return Decimal(left) == Decimal(right)  # exact for decimals and integers
    return left == right  # text, dates and timestamps: exact


def compare_marts(warehouse: Path, target: str, months: list[date] | None = None) -> dict:
    """Rows per mart on both sides and up to 5 differences per mart ([] when identical).
    `months`: compare only these months (the history only when every month was built)."""
    from tiering.warehouse import connect

    report = {}
    duck = connect(warehouse, read_only=True)
    try:
        for table, order in COMPARED_MARTS.items():
            where = "true"
            if months is not None and "month" in order:
                where = "month in (" + ", ".join(f"date '{m}'" for m in months) + ")"
            elif months is not None:
                continue  # history over a subset of months is not comparable
            columns = [r[0] for r in duck.execute(
                "select column_name from information_schema.columns where table_schema = 'marts' "
                "and table_name = ? order by ordinal_position", [table]).fetchall()]
            expected = duck.execute(f"select {', '.join(columns)} from marts.{table} where {where} "
                                    f"order by {', '.join(order)}").fetchall()
            actual = (_pg_rows if target == "postgres" else _spark_rows)(table, columns, order, where)
            differences = []
            if len(expected) != len(actual):
                differences.append(f"{len(expected)} rows in duckdb, {len(actual)} on {target}")
            # the row counts may differ (reported above): compare the rows both sides have
            for left, right in zip(expected, actual, strict=False):
                for column, a, b in zip(columns, left, right, strict=True):
                    if not _same(a, b):
                        key = {k: str(left[columns.index(k)]) for k in order}
                        differences.append(f"{key} {column}: duckdb {a!r} != {target} {b!r}")
                if len(differences) >= 5:
                    break
            report[table] = {"rows": len(expected), f"{target}_rows": len(actual), "differences": differences}
    finally:
        duck.close()
    return report


def run(target: str, warehouse: Path, months: list[str] | None = None, build_all: bool = False,
        test_every_month: bool = True) -> dict:
    """Copy, build every month, compare. The JSON-able summary of what happened."""
    if target not in TARGETS:
        raise TargetError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    adapter = {"postgres": ("dbt.adapters.postgres", "postgres", "make test-postgres"),
               "spark": ("dbt.adapters.spark", "spark", "make test-spark")}[target]
    if importlib.util.find_spec(adapter[0]) is None:
        raise TargetError(f"the dbt adapter for {target} is not installed: it is in the optional "
                          f"`{adapter[1]}` dependency group (uv sync --group {adapter[1]}, or {adapter[2]})")
    warehouse = Path(warehouse)
    all_runs = month_runs(warehouse)
    runs = [r for r in all_runs if not months or f"{r.month:%Y-%m}" in months]
    if not runs:
        raise TargetError(f"none of the months {', '.join(months or [])} has a successful run in {warehouse}")
    started = time.monotonic()
    copied = (copy_to_postgres if target == "postgres" else copy_to_spark)(warehouse)
    copy_seconds = round(time.monotonic() - started, 2)
    builds = build(target, runs, None if build_all else CORE_SELECTION, test_every_month)
    started = time.monotonic()
    marts = compare_marts(warehouse, target, None if len(runs) == len(all_runs) else [r.month for r in runs])
    return {
        "target": target,
        "months": [b["month"] for b in builds],
        "copy_seconds": copy_seconds,
        "copied_rows": copied,
        "builds": builds,
        "compare_seconds": round(time.monotonic() - started, 2),
        "marts": marts,
        "identical": all(not m["differences"] for m in marts.values()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tiering.targets", description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, choices=TARGETS)
    parser.add_argument("--warehouse", required=True, type=Path, help="DuckDB warehouse whose months to replay")
    parser.add_argument("--months", nargs="*", help="only these months (YYYY-MM); default: every month")
    parser.add_argument("--core-only", action="store_true",
                        help="build only the core models (CORE_SELECTION), not the whole project")
    parser.add_argument("--test-last-month-only", action="store_true",
                        help="dbt run for the earlier months, dbt build (with tests) for the last one")
    args = parser.parse_args(argv)
    try:
        summary = run(args.target, args.warehouse, args.months, not args.core_only, not args.test_last_month_only)
    except TieringError as exc:
        print(json.dumps({"target": args.target, "error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, default=str))
    return 0 if summary["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
