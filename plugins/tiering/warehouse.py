"""The DuckDB warehouse: connection and the tables Python owns (landing views, audit).

dbt owns `staging`, `intermediate`, `quarantine` and `marts`; this module owns what the
pipeline writes before and after dbt. All DDL is idempotent.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

DDL = [
    "create schema if not exists landing",
    "create schema if not exists audit",
    """create table if not exists audit.runs (
        run_id varchar primary key, month date not null, rule_version varchar, status varchar,
        source_dir varchar, landing_dir varchar, input_checksum varchar, restatement boolean,
        started_at timestamp, finished_at timestamp, message varchar)""",
    """create table if not exists audit.rule_versions (
        rule_version varchar primary key, label varchar, content json, first_used_at timestamp)""",
    # the SHA-256 of the run's source files (tiering.operations.manifest_fingerprint; set by finish_run): with
    # rule_version, what `tiering backfill` compares to skip a month whose inputs have not changed
    "alter table audit.runs add column if not exists source_fingerprint varchar",
    # who runs a run and when it was last seen alive: the next run marks a dead run 'abandoned'
    # (tiering.runs.abandon_dead_runs); pid only when one process runs the whole DAG run (tiering run)
    "alter table audit.runs add column if not exists pid integer",
    "alter table audit.runs add column if not exists host varchar",
    "alter table audit.runs add column if not exists heartbeat_at timestamp",
]


def register_landing(con: duckdb.DuckDBPyConnection, manifest: dict) -> None:
    """The run's view of the change log for dbt (source `landing`): the table landing.partitions
    (the partition versions the run reads, from its manifest) and one view per source table over
    their Parquet files. Written by the landing step; dbt's staging models read them."""
    from tiering.source import LOG_TYPES, TABLES, sql_literal

    rows = [(name, partition, v["version"], v["file"], v["rows"], v["hash"])
            for name, table in manifest["tables"].items() for partition, v in table["partitions"].items()]
    con.execute("create or replace table landing.partitions (table_name varchar, landing_partition varchar, "
                "version integer, landing_file varchar, rows bigint, content_hash varchar)")
    if rows:
        con.executemany("insert into landing.partitions values (?, ?, ?, ?, ?, ?)", rows)
    for name, spec in TABLES.items():
        files = [v["file"] for v in manifest["tables"][name]["partitions"].values()]
        columns = spec.log_columns
        if files:
            # one branch per file, its name a constant: a filter on landing_file (quarantine.rejected_rows
            # reads the few files that hold a rejection) keeps only those branches when DuckDB plans
            # the query. (Staging on DuckDB reads the files it types with one read_parquet of exactly
            # those: macro landed_rows; a first month's 24 branches ran out of memory there.)
            body = "\nunion all\n".join(
                f"select {', '.join(columns)}, {sql_literal(f)} as landing_file from read_parquet({sql_literal(f)})"
                for f in files)
        else:
            body = "select " + ", ".join(f"null::{LOG_TYPES.get(c, 'varchar')} as {c}" for c in columns) + \
                   ", null::varchar as landing_file where false"
        con.execute(f"create or replace view landing.{name} as {body}")


# A sandboxed session (`tiering query`): the database file and nothing else. No ATTACH of another
# file, no COPY TO / EXPORT, no reading files (read_csv, read_parquet, glob, ...), no extension
# installed or loaded on the fly; and the configuration locked once the session settings are made,
# so no SET / RESET / PRAGMA can turn any of it back on.
SANDBOX_CONFIG = {"enable_external_access": False, "autoinstall_known_extensions": False,
                  "autoload_known_extensions": False}


def connect(path: Path | str, read_only: bool = False, retries: int = 20,
            sandboxed: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (UTC session). Waits briefly if another process holds the write lock.
    `sandboxed` (read-only only): no access outside the database file and a locked configuration
    (SANDBOX_CONFIG), for SQL a user types."""
    path = Path(path)
    if sandboxed and not read_only:
        raise ValueError("a sandboxed connection is read-only")
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse not found: {path}; run `tiering run` or `make run` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries):
        try:
            # (a sandbox cannot change temp_directory once open: the resource settings go in at connect)
            config = {**SANDBOX_CONFIG, **_env_settings()} if sandboxed else {}
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or attempt == retries - 1:
                raise
            time.sleep(0.5)
    con = apply_settings(con)
    if sandboxed:
        con.execute("set lock_configuration = true")
    return con


def apply_settings(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """UTC session, and the same DuckDB resource settings as dbt's profile (dbt_project/profiles.yml):
    TIERING_DUCKDB_THREADS and _TEMP_DIRECTORY when set, _MEMORY_LIMIT (else DEFAULT_MEMORY_LIMIT)."""
    con.execute("set TimeZone = 'UTC'")
    for setting, value in _env_settings().items():
        if str(con.execute(f"select current_setting('{setting}')").fetchone()[0]) != value:
            con.execute(f"set {setting} = '{value}'")  # temp_directory: once per database instance
    return con


# DuckDB's memory limit when TIERING_DUCKDB_MEMORY_LIMIT is not set, the same as dbt's profile: with
# it a month at 1M customers peaks at about 2 GB for the whole process tree, DuckDB spilling to disk
# beyond its limit (bench/RESULTS.md); DuckDB's own default is 80% of the machine's memory.
DEFAULT_MEMORY_LIMIT = "1GB"


def _env_settings() -> dict[str, str]:
    """The DuckDB resource settings given in the environment (see apply_settings); the memory limit
    is DEFAULT_MEMORY_LIMIT when none is given."""
    settings = {"memory_limit": DEFAULT_MEMORY_LIMIT}
    for setting, env in (("threads", "TIERING_DUCKDB_THREADS"), ("memory_limit", "TIERING_DUCKDB_MEMORY_LIMIT"),
                         ("temp_directory", "TIERING_DUCKDB_TEMP_DIRECTORY")):
        if os.environ.get(env):
            settings[setting] = os.environ[env]
    return settings


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)


# Tables that carry is_provisional (dbt models; the marts kept per month are appended to, so a model
# that gains a column does not add it to a table built before).
PROVISIONAL_TABLES = ("intermediate.int_customer_tier_months", "marts.customer_tier_monthly",
                      "marts.customer_credit_monthly", "marts.tier_summary_monthly", "audit.customer_tier_results")


def add_provisional_columns(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse built before months could be provisional: its months were all final."""
    existing = {f"{s}.{t}" for s, t in con.execute(
        "select table_schema, table_name from information_schema.tables where table_catalog = current_database()"
    ).fetchall()}
    for table in PROVISIONAL_TABLES:
        if table in existing:
            con.execute(f"alter table {table} add column if not exists is_provisional boolean default false")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")
