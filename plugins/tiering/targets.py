"""The same pipeline on another target (PostgreSQL, Spark): from the landed change log to the marts.

DuckDB stays the pipeline's warehouse. To show that the core is portable, every month a DuckDB
warehouse computed is run again on the other target from the same landed Parquet files, with the
very vars of that month's run (same run id, same rules content from `audit.rule_versions`), and
the marts are compared row by row with DuckDB's. Per month, oldest first:

  1. landing: the partition versions the run read (its landing manifest) made readable as the dbt
     source `landing` (docs/portability.md). PostgreSQL: COPY (pyarrow -> psycopg) of the files not
     loaded yet into landing.<table>; a partition loaded in another version has its rows replaced.
     Spark: views over the Parquet files themselves. On both, landing.partitions = the run's
     partitions;
  2. `dbt run|build --select staging intermediate.as_of quarantine` (transform_staging's selection);
  3. the pipeline's Python step between them, without the potential model (switched off here): the
     pseudonymous keys of customers and approvers (tiering.pseudonym) into potential.*, and a
     `skipped` fit_log row;
  4. `dbt run|build` of the rest (transform_marts' selection).

    python -m tiering.targets --target postgres --warehouse warehouse/tiering.duckdb

prints one JSON object (seconds per step, rows per mart, differences) and exits 1 when a mart
differs. dbt runs in this process (one import and one parse for all months); run it in a
process of its own (the tests do), since dbt keeps adapter state per process.
Connection settings: TIERING_PG_HOST/PORT/USER/PASSWORD and TIERING_PG_DBT_DATABASE (the
database is created when missing; its landing, potential and model schemas are replaced unless
--keep-target), Spark: TIERING_SPARK_WAREHOUSE_DIR (see dbt_project/profiles.yml).
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
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from tiering.errors import TieringError
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
# What the marts build selects with `--core-only`: the compared marts with everything upstream, and
# the other marts and the audit model of the core pipeline. By default the whole project is built.
CORE_SELECTION = ("+customer_tier_monthly", "+customer_credit_monthly", "+tier_summary_monthly",
                  "+customer_tier_history", "customer_tier_results", "pareto_curve_monthly",
                  "tier_alerts_monthly", "tier_migration_monthly", "tier_policy")
# schemas of the dbt sources (written here) and of the models (dbt); replaced on the target
SOURCE_SCHEMAS = ("landing", "potential")
MODEL_SCHEMAS = ("staging", "intermediate", "quarantine", "marts", "audit")
POTENTIAL_OFF = "potential is off on this target (tiering.targets runs no model fit)"


class TargetError(TieringError):
    """The other target cannot be reached or the build there failed."""


@dataclass(frozen=True)
class MonthRun:
    """A successful run of the DuckDB warehouse, run again on the target."""
    month: date
    run_id: str
    rules: dict
    rule_version: str
    manifest: dict          # its landing manifest: the partition versions it read


# --- what a month reads ----------------------------------------------------------------------

def computed_months(warehouse: Path) -> list[tuple]:
    """(month, run_id, rule_version, rules content, landing manifest path) of the latest successful
    run of every month in the warehouse, oldest month first."""
    from tiering.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
        rows = con.execute("""
            select runs.month, runs.run_id, runs.rule_version, cast(rules.content as varchar), runs.landing_dir
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
    return rows


def month_runs(warehouse: Path, months: list[str] | None = None) -> list[MonthRun]:
    """The latest successful run of every month in the warehouse (or of `months`, YYYY-MM),
    oldest month first, with its landing manifest (its files absolute: tiering.landing.load_manifest)."""
    from tiering.landing import load_manifest, manifest_path

    runs = []
    for month, run_id, version, content, recorded in computed_months(warehouse):
        if months and f"{month:%Y-%m}" not in months:
            continue
        path = manifest_path(warehouse, recorded)
        if not str(path or "").endswith(".json"):
            # (a month computed by the previous core, before the change log: tiering migrate)
            raise TargetError(f"{month:%Y-%m} was last computed by run {run_id}, which read no landing manifest "
                              f"({path}): run the month again on DuckDB, or pass --months without it")
        try:
            manifest = load_manifest(path)
        except (OSError, ValueError) as exc:
            raise TargetError(f"the landing manifest of run {run_id} ({month:%Y-%m}) at {path} cannot be "
                              f"read ({exc}); it is written by the run's extract_and_land step: run the month "
                              "again on DuckDB") from exc
        runs.append(MonthRun(month=month, run_id=run_id, rule_version=version, rules=json.loads(content),
                             manifest=manifest))
    return runs


def month_vars(run: MonthRun) -> dict:
    """The dbt vars of that run (tiering.dbt_runner.dbt_vars)."""
    from tiering.dbt_runner import dbt_vars
    from tiering.runspec import RunSpec

    spec = RunSpec(month=run.month, run_id=run.run_id, source_dir=Path("."))
    return dbt_vars(spec, SimpleNamespace(data=run.rules, version=run.rule_version))


# the landed files' columns that are not text (tiering.source.LOG_TYPES) on PostgreSQL and Spark:
# `_hash` is an unsigned 64-bit integer, which Spark reads from Parquet as decimal(20, 0)
PG_LOG_TYPES = {"_source_line": "bigint", "_hash": "numeric(20)"}
SPARK_LOG_TYPES = {"_source_line": "bigint", "_hash": "decimal(20, 0)"}


def landing_columns(table: str) -> list[str]:
    """The columns of a table's landed files (tiering.landing), as the source `landing` has them
    besides landing_file."""
    from tiering.source import TABLES

    return list(TABLES[table].log_columns)


PARTITION_COLUMNS = ("table_name", "landing_partition", "version", "landing_file", "rows", "content_hash")


def _arrow(columns, rows: list[tuple]):
    """Rows as an Arrow table (what tiering.pg_publish.copy_arrow copies)."""
    import pyarrow as pa

    return pa.table({c: [row[i] for row in rows] for i, c in enumerate(columns)})


def run_partitions(manifest: dict) -> list[tuple[str, str, int, str, int, str]]:
    """landing.partitions of a run: (table_name, landing_partition, version, landing_file, rows,
    content_hash), as tiering.warehouse.register_landing writes it on DuckDB."""
    return [(name, partition, v["version"], v["file"], v["rows"], v["hash"])
            for name, table in sorted(manifest["tables"].items())
            for partition, v in sorted(table["partitions"].items())]


def potential_tables() -> dict[str, list[tuple[str, str]]]:
    """The tables of the source `potential` with their DuckDB column types (from the DDL the
    pipeline runs, so the target gets the same columns)."""
    import duckdb

    from tiering.potential import DDL
    from tiering.pseudonym import APPROVER_KEYS_DDL

    con = duckdb.connect()
    try:
        for statement in (*DDL, APPROVER_KEYS_DDL):
            con.execute(statement)
        tables = {}
        for table, column, kind in con.execute(
                "select table_name, column_name, data_type from information_schema.columns "
                "where table_schema = 'potential' order by table_name, ordinal_position").fetchall():
            tables.setdefault(table, []).append((column, kind))
        return tables
    finally:
        con.close()


def key_rows(customer_ids: list[str], approvers: list[str]) -> tuple[list[tuple], list[tuple]]:
    """(customer_id, customer_key) and (approver, approver_key) rows (tiering.pseudonym: the same
    secret gives the same keys as the DuckDB run)."""
    from tiering.pseudonym import approver_key, customer_keys

    return (list(zip(customer_ids, customer_keys(customer_ids), strict=True)),
            [(a, approver_key(a)) for a in approvers])


def fit_log_row(run: MonthRun) -> tuple:
    """potential.fit_log's row of a month whose model is switched off."""
    return (run.run_id, run.month, "skipped", POTENTIAL_OFF, 0, 0.0, None,
            datetime.now(UTC).replace(tzinfo=None))


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


def pg_prepare(keep: bool = False) -> None:
    """The dbt test database with the landing and potential tables (empty unless `keep`: then
    what an earlier invocation loaded and built stays, and only new files are loaded)."""
    from psycopg import sql

    from tiering.pg_publish import pg_type
    from tiering.source import TABLES

    ensure_pg_database()
    pg = pg_connect()
    try:
        if not keep:
            for schema in (*SOURCE_SCHEMAS, *MODEL_SCHEMAS):
                pg.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
        for schema in SOURCE_SCHEMAS:
            pg.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        for name in TABLES:
            columns = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_LOG_TYPES.get(c, "text")))
                       for c in [*landing_columns(name), "landing_file"]]
            pg.execute(sql.SQL("create table if not exists {} ({})").format(
                sql.Identifier("landing", name), sql.SQL(", ").join(columns)))
        pg.execute("""create table if not exists landing.partitions (table_name text, landing_partition text,
                      version integer, landing_file text, rows bigint, content_hash text)""")
        # which file of each partition landing.<table> holds (what a later month need not load again)
        pg.execute("""create table if not exists landing.loaded_files (table_name text, landing_partition text,
                      landing_file text, rows bigint, loaded_at timestamp,
                      primary key (table_name, landing_partition))""")
        for table, columns in potential_tables().items():
            pg.execute(sql.SQL("create table if not exists {} ({})").format(
                sql.Identifier("potential", table), sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(pg_type(t))) for c, t in columns)))
        pg.commit()
    finally:
        pg.close()


def _parquet_batches(path: str, columns: list[str], batch_rows: int = 100_000):
    """The file's rows in `columns` order, plus landing_file = its path, in Arrow batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
        yield pa.RecordBatch.from_arrays([*batch.columns, pa.array([path] * batch.num_rows, pa.string())],
                                         names=[*columns, "landing_file"])


def pg_load_landing(manifest: dict) -> dict:
    """Make the run's partition versions the source `landing` on PostgreSQL: COPY each file that
    landing.<table> does not hold yet; a partition held in another version (a restatement, or an
    earlier version a month run before it read) has its rows replaced by this one's. One
    transaction. landing.partitions becomes the run's partitions. Returns files, rows, replaced."""
    from psycopg import sql

    from tiering.pg_publish import copy_arrow

    pg = pg_connect()
    stats = {"files": 0, "rows": 0, "replaced": 0}
    try:
        held = {(t, p): f for t, p, f in pg.execute(
            "select table_name, landing_partition, landing_file from landing.loaded_files").fetchall()}
        for name, partition, _version, file, rows, _hash in run_partitions(manifest):
            if held.get((name, partition)) == file:
                continue
            table = sql.Identifier("landing", name)
            if (name, partition) in held:
                pg.execute(sql.SQL("delete from {} where landing_partition = %s").format(table), [partition])
                pg.execute("delete from landing.loaded_files where table_name = %s and landing_partition = %s",
                           [name, partition])
                stats["replaced"] += 1
            columns = landing_columns(name)
            copied = copy_arrow(pg, table, [*columns, "landing_file"], _parquet_batches(file, columns))
            if copied != rows:
                raise TargetError(f"{file}: {copied} rows, but the landing manifest says {rows}: the change log "
                                  "was changed after it was landed; run the month again on DuckDB")
            pg.execute("insert into landing.loaded_files values (%s, %s, %s, %s, %s)",
                       [name, partition, file, copied, datetime.now(UTC).replace(tzinfo=None)])
            stats["files"] += 1
            stats["rows"] += copied
        pg.execute("delete from landing.partitions")
        copy_arrow(pg, sql.Identifier("landing", "partitions"), list(PARTITION_COLUMNS),
                   _arrow(PARTITION_COLUMNS, run_partitions(manifest)))
        pg.commit()
        if stats["files"]:
            pg.autocommit = True
            pg.execute("analyze")   # the staging models filter the landing tables by file
    finally:
        pg.close()
    return stats


def pg_write_potential(run: MonthRun) -> dict:
    """The Python step between staging and the marts, potential switched off: every key of the
    customers and approvers as of the month (replacing the keys), no prediction, a `skipped`
    fit_log row for the run."""
    from psycopg import sql

    from tiering.pg_publish import copy_arrow

    pg = pg_connect()
    try:
        ids = [r[0] for r in pg.execute(
            "select distinct customer_id from intermediate.int_customers__as_of order by 1").fetchall()]
        approvers = [r[0] for r in pg.execute(
            "select distinct override_approver from intermediate.int_tier_overrides__as_of "
            "where override_approver is not null order by 1").fetchall()]
        customer_keys, approver_keys = key_rows(ids, approvers)
        for table, columns, rows in (("customer_keys", ("customer_id", "customer_key"), customer_keys),
                                     ("approver_keys", ("approver", "approver_key"), approver_keys)):
            pg.execute(sql.SQL("delete from {}").format(sql.Identifier("potential", table)))
            copy_arrow(pg, sql.Identifier("potential", table), list(columns), _arrow(columns, rows))
        pg.execute("delete from potential.customer_potential where month = %s", [run.month])
        pg.execute("delete from potential.fit_log where run_id = %s", [run.run_id])
        pg.execute("insert into potential.fit_log values (%s, %s, %s, %s, %s, %s, %s, %s)", list(fit_log_row(run)))
        pg.commit()
    finally:
        pg.close()
    return {"customer_keys": len(customer_keys), "approver_keys": len(approver_keys)}


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
            # dates before 1582 and timestamps before 1900 (a rejected row's) written and read as
            # they are, not refused (Spark's default for the calendar switch of Spark 3)
            .config("spark.sql.parquet.datetimeRebaseModeInWrite", "CORRECTED")
            .config("spark.sql.parquet.datetimeRebaseModeInRead", "CORRECTED")
            .config("spark.sql.parquet.int96RebaseModeInWrite", "CORRECTED")
            .config("spark.sql.parquet.int96RebaseModeInRead", "CORRECTED")
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


def _spark_text(value: str) -> str:
    """A Spark SQL string literal (Spark unescapes backslashes in literals)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def spark_prepare(keep: bool = False) -> None:
    """The source databases (landing, potential) and the potential tables; the model databases
    dropped unless `keep`."""
    spark = spark_session()
    if not keep:
        for schema in (*SOURCE_SCHEMAS, *MODEL_SCHEMAS):
            spark.sql(f"drop database if exists {schema} cascade")
    for schema in SOURCE_SCHEMAS:
        spark.sql(f"create database if not exists {schema}")
    for table, columns in potential_tables().items():
        spark.sql(f"create table if not exists potential.{table} "
                  f"({', '.join(f'`{c}` {_spark_type(t)}' for c, t in columns)}) using parquet")


def spark_register_landing(manifest: dict) -> dict:
    """Make the run's partition versions the source `landing` on Spark, reading the change log
    itself: one view per table over its Parquet files (each row with landing_file = its file's
    path, as DuckDB's views have it), and landing.partitions = the run's partitions. Returns the
    files new since the month before (files, rows, replaced) and how many the views read."""
    from tiering.source import TABLES

    spark = spark_session()
    partitions = run_partitions(manifest)
    before = {}       # the files the views read for the month before: what is new (the summary's counts)
    if spark.catalog.tableExists("landing.partitions"):
        before = {(r.table_name, r.landing_partition): r.landing_file
                  for r in spark.table("landing.partitions").collect()}
    for name in TABLES:
        columns = landing_columns(name)
        listed = ", ".join(f"`{c}`" for c in columns)
        files = [row[3] for row in partitions if row[0] == name]
        if files:
            body = "\nunion all\n".join(f"select {listed}, {_spark_text(f)} as landing_file "
                                        f"from parquet.`{f.replace('`', '``')}`" for f in files)
        else:
            body = ("select " + ", ".join(f"cast(null as {SPARK_LOG_TYPES.get(c, 'string')}) as `{c}`"
                                          for c in columns) + ", cast(null as string) as landing_file where false")
        spark.sql(f"create or replace view landing.{name} as {body}")
    schema = ("table_name string, landing_partition string, version int, landing_file string, rows bigint, "
              "content_hash string")
    spark.createDataFrame(partitions, schema).write.mode("overwrite").format("parquet") \
        .saveAsTable("landing.partitions")
    new = [row for row in partitions if before.get((row[0], row[1])) != row[3]]
    return {"files": len(new), "rows": sum(row[4] for row in new),
            "replaced": sum((row[0], row[1]) in before for row in new), "files_read": len(partitions)}


def spark_write_potential(run: MonthRun) -> dict:
    """As pg_write_potential, on Spark."""
    spark = spark_session()
    ids = [r[0] for r in spark.sql(
        "select distinct customer_id from intermediate.int_customers__as_of order by 1").collect()]
    approvers = [r[0] for r in spark.sql(
        "select distinct override_approver from intermediate.int_tier_overrides__as_of "
        "where override_approver is not null order by 1").collect()]
    customer_keys, approver_keys = key_rows(ids, approvers)
    for table, rows, columns in (("customer_keys", customer_keys, "customer_id string, customer_key string"),
                                 ("approver_keys", approver_keys, "approver string, approver_key string")):
        spark.createDataFrame(rows, columns).write.mode("overwrite").format("parquet") \
            .saveAsTable(f"potential.{table}")
    # (customer_potential keeps no row: no model is fitted here)
    fit_log = potential_tables()["fit_log"]
    spark.createDataFrame([fit_log_row(run)], ", ".join(f"{c} {_spark_type(t)}" for c, t in fit_log)) \
        .write.insertInto("potential.fit_log")
    return {"customer_keys": len(customer_keys), "approver_keys": len(approver_keys)}


def _spark_rows(table: str, columns: list[str], order: tuple[str, ...], where: str) -> list[tuple]:
    spark = spark_session()
    frame = spark.sql(f"select {', '.join(columns)} from marts.{table} where {where} order by {', '.join(order)}")
    return [tuple(row) for row in frame.collect()]


# --- run and compare -------------------------------------------------------------------------

def _dbt(runner, command: str, target: str, run: MonthRun, selection: list[str]) -> tuple[float, int]:
    """One dbt invocation for the run's month: (seconds, nodes). Raises TargetError naming the
    failed nodes."""
    started = time.monotonic()
    result = runner.invoke([command, *_dbt_args(target), "--vars", json.dumps(month_vars(run), default=str),
                            *selection])
    if not result.success:
        failed = [f"{r.node.name}: {(r.message or '').strip()[:300]}"
                  for r in getattr(result.result, "results", None) or []
                  if str(getattr(r.status, "value", r.status)) in ("error", "fail", "runtime error")]
        raise TargetError(f"dbt {command} failed on {target} for {run.month:%Y-%m}: "
                          f"{'; '.join(failed) or result.exception}"[:3000])
    return round(time.monotonic() - started, 2), len(result.result.results)


def _dbt_args(target: str) -> list[str]:
    return ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target", target,
            "--target-path", f"target-{target}", "--log-path", str(DBT_PROJECT_DIR / "logs" / target)]


def build(target: str, runs: list[MonthRun], core_only: bool = False, test_every_month: bool = True) -> list[dict]:
    """Every run's month on the target, oldest first, in this process: landing, staging, keys,
    marts (see the module's docstring). `test_every_month=False`: `dbt run` for the earlier months
    and `dbt build` (models, data and unit tests) only for the last one (the full-history tests
    then see every month)."""
    from dbt.cli.main import dbtRunner

    from tiering.pipeline import STAGING_SELECTION

    os.environ["TIERING_DBT_TARGET"] = target
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("DBT_VERSION_CHECK", "false")
    load_landing = pg_load_landing if target == "postgres" else spark_register_landing
    write_potential = pg_write_potential if target == "postgres" else spark_write_potential
    staging = ["--select", *STAGING_SELECTION]
    rest = ["--exclude", *STAGING_SELECTION, *(["--select", *CORE_SELECTION] if core_only else []),
            "--indirect-selection", "cautious"]
    parsed = dbtRunner().invoke(["parse", *_dbt_args(target), "--vars", json.dumps(month_vars(runs[0]), default=str)])
    if not parsed.success:
        raise TargetError(f"dbt parse failed on {target}: {parsed.exception}")
    runner = dbtRunner(manifest=parsed.result)    # one parse for every month (only the rules change it)
    timings = []
    for index, run in enumerate(runs):
        command = "build" if test_every_month or index == len(runs) - 1 else "run"
        started = time.monotonic()
        landing = load_landing(run.manifest)
        landing["seconds"] = round(time.monotonic() - started, 2)
        staging_seconds, staging_nodes = _dbt(runner, command, target, run, staging)
        started = time.monotonic()
        keys = write_potential(run)
        keys["seconds"] = round(time.monotonic() - started, 2)
        marts_seconds, marts_nodes = _dbt(runner, command, target, run, rest)
        timings.append({"month": f"{run.month:%Y-%m}", "command": command, "landing": landing,
                        "staging_seconds": staging_seconds, "potential": keys, "marts_seconds": marts_seconds,
                        "nodes": staging_nodes + marts_nodes})
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


# what identifies a quarantined row, and its rule (not the reason: its wording may differ by dialect)
QUARANTINE_COLUMNS = ("run_id", "source_table", "landing_partition", "source_line", "rule")


def compare_quarantine(warehouse: Path, target: str, run_ids: list[str]) -> dict:
    """The rows the runs quarantined (quarantine.rejected_rows) on both sides: the same rows with the
    same rule, or up to 5 differences."""
    from collections import Counter

    from tiering.warehouse import connect

    listed = ", ".join("'" + r.replace("'", "''") + "'" for r in run_ids)
    query = f"select {', '.join(QUARANTINE_COLUMNS)} from quarantine.rejected_rows where run_id in ({listed})"
    duck = connect(warehouse, read_only=True)
    try:
        expected = Counter(duck.execute(query).fetchall())
    finally:
        duck.close()
    if target == "postgres":
        pg = pg_connect()
        try:
            actual = Counter(pg.execute(query).fetchall())
        finally:
            pg.close()
    else:
        actual = Counter(tuple(row) for row in spark_session().sql(query).collect())
    differences = [f"only in duckdb: {dict(zip(QUARANTINE_COLUMNS, row, strict=True))}"
                   for row in sorted(expected - actual)][:5]
    differences += [f"only on {target}: {dict(zip(QUARANTINE_COLUMNS, row, strict=True))}"
                    for row in sorted(actual - expected)][:5]
    return {"rows": sum(expected.values()), f"{target}_rows": sum(actual.values()), "differences": differences}


def run(target: str, warehouse: Path, months: list[str] | None = None, core_only: bool = False,
        test_every_month: bool = True, keep_target: bool = False) -> dict:
    """Prepare the target, run every month there, compare. The JSON-able summary of what happened."""
    if target not in TARGETS:
        raise TargetError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    adapter = {"postgres": ("dbt.adapters.postgres", "postgres", "make test-postgres"),
               "spark": ("dbt.adapters.spark", "spark", "make test-spark")}[target]
    if importlib.util.find_spec(adapter[0]) is None:
        raise TargetError(f"the dbt adapter for {target} is not installed: it is in the optional "
                          f"`{adapter[1]}` dependency group (uv sync --group {adapter[1]}, or {adapter[2]})")
    warehouse = Path(warehouse)
    every_month = [row[0] for row in computed_months(warehouse)]
    runs = month_runs(warehouse, months)
    if not runs:
        raise TargetError(f"none of the months {', '.join(months or [])} has a successful run in {warehouse}")
    started = time.monotonic()
    (pg_prepare if target == "postgres" else spark_prepare)(keep_target)
    prepare_seconds = round(time.monotonic() - started, 2)
    started = time.monotonic()
    builds = build(target, runs, core_only, test_every_month)
    build_seconds = round(time.monotonic() - started, 2)
    started = time.monotonic()
    # (with --keep-target the target may hold every month although this invocation ran fewer)
    compared = None if len(runs) == len(every_month) or keep_target else [r.month for r in runs]
    marts = compare_marts(warehouse, target, compared)
    quarantine = compare_quarantine(warehouse, target, [r.run_id for r in runs])
    return {
        "target": target,
        "months": [b["month"] for b in builds],
        "prepare_seconds": prepare_seconds,
        "build_seconds": build_seconds,
        "builds": builds,
        "compare_seconds": round(time.monotonic() - started, 2),
        "marts": marts,
        "quarantine": quarantine,
        "identical": all(not m["differences"] for m in [*marts.values(), quarantine]),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tiering.targets", description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, choices=TARGETS)
    parser.add_argument("--warehouse", required=True, type=Path, help="DuckDB warehouse whose months to run again")
    parser.add_argument("--months", nargs="*", help="only these months (YYYY-MM); default: every month")
    parser.add_argument("--core-only", action="store_true",
                        help="build only the core models (CORE_SELECTION) after staging, not the whole project")
    parser.add_argument("--test-last-month-only", action="store_true",
                        help="dbt run for the earlier months, dbt build (with tests) for the last one")
    parser.add_argument("--keep-target", action="store_true",
                        help="keep what the target holds (landed files, models) and go on from there, "
                             "e.g. to add the next month; default: start from empty schemas")
    args = parser.parse_args(argv)
    try:
        summary = run(args.target, args.warehouse, args.months, args.core_only, not args.test_last_month_only,
                      args.keep_target)
    except TieringError as exc:
        print(json.dumps({"target": args.target, "error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, default=str))
    return 0 if summary["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
