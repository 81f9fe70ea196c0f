"""The DuckDB warehouse: connection and the tables Python owns (raw, quarantine, audit).

dbt owns `staging`, `intermediate` and `marts`; this module owns the tables the
pipeline writes before and after dbt. All DDL is idempotent.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from tiering.source import TABLES


def _raw_ddl() -> list[str]:
    statements = []
    for name, spec in TABLES.items():
        cols = ", ".join(f"{c} varchar" for c in spec.columns)
        statements.append(
            f"create table if not exists raw.{name} ({cols}, _row_key varchar not null, "
            f"_source_file varchar, _source_line bigint, _first_batch_id varchar, _loaded_at timestamp)"
        )
    return statements


def _batch_members_ddl() -> str:
    """The view raw.batch_members: each run's own loaded rows of each table (batch_id, source_table,
    row_key), wherever they are recorded: in raw.batch_rows, or, for a batch whose rows were all
    new to raw (its lineage row says member_rows_added), as the raw rows it added."""
    added = [f"""select lineage.batch_id, lineage.source_table, {name}._row_key as row_key
        from raw.batch_lineage as lineage
        inner join raw.{name} as {name} on {name}._first_batch_id = lineage.member_batch_id
        where lineage.source_table = '{name}' and lineage.batch_id = lineage.member_batch_id
            and lineage.member_rows_added""" for name in TABLES]
    return ("create or replace view raw.batch_members as\n"
            "select batch_id, source_table, row_key from raw.batch_rows\nunion all\n"
            + "\nunion all\n".join(added))


DDL = [
    "create schema if not exists raw",
    "create schema if not exists quarantine",
    "create schema if not exists audit",
    *_raw_ddl(),
    # which raw rows make up each run's batch (raw holds every distinct source row once)
    """create table if not exists raw.batch_rows (
        batch_id varchar not null, source_table varchar not null, row_key varchar not null)""",
    # which batches' rows make up each run's batch of a table: the run's own, and for a table landed
    # as a delta (tiering.increment) those of its base run's batch
    """create table if not exists raw.batch_lineage (
        batch_id varchar not null, source_table varchar not null, member_batch_id varchar not null)""",
    """create table if not exists quarantine.rejected_rows (
        run_id varchar not null, month date not null, source_table varchar not null,
        source_file varchar, source_line bigint, row_key varchar, rule varchar not null,
        reason varchar not null, record json, quarantined_at timestamp)""",
    """create table if not exists audit.runs (
        run_id varchar primary key, month date not null, rule_version varchar, status varchar,
        source_dir varchar, landing_dir varchar, input_checksum varchar, restatement boolean,
        started_at timestamp, finished_at timestamp, message varchar)""",
    """create table if not exists audit.rule_versions (
        rule_version varchar primary key, label varchar, content json, first_used_at timestamp)""",
    """create table if not exists audit.load_batches (
        run_id varchar not null, month date not null, source_table varchar not null,
        source_file varchar, source_sha256 varchar, landed_sha256 varchar, extracted_rows bigint,
        loaded_rows bigint, new_raw_rows bigint, quarantined_rows bigint, loaded_at timestamp)""",
    # the batch whose rows the incrementally kept staging tables hold (tiering.pipeline.transform_staging);
    # no row while they are being built or after an ad-hoc dbt build
    "create table if not exists audit.staging_state (batch_id varchar, built_at timestamp)",
    # ... and the code that built them (a changed model or macro rebuilds them)
    "alter table audit.staging_state add column if not exists code_version varchar",
    # rows of the as-of snapshot (extracted_rows counts what was landed: less for a delta) and the base run
    "alter table audit.load_batches add column if not exists snapshot_rows bigint",
    "alter table audit.load_batches add column if not exists base_run_id varchar",
    # ... and whether the build updated them in place (the staging gate then checks the touched ids)
    "alter table audit.staging_state add column if not exists updated_in_place boolean",
    # of a versioned table: how many of the run's quarantined rows share their id and updated_at with
    # a row the run loaded (tiering.load); the next run's landing reads it instead of the source
    # (tiering.increment: a delta's carried rows); NULL: not counted (a load by older code)
    "alter table audit.load_batches add column if not exists quarantined_clashes bigint",
    # whether a member batch's rows are the raw rows it added (raw._first_batch_id = member_batch_id):
    # a batch whose loaded rows were all new to raw lists none of them in raw.batch_rows (tiering.load;
    # at 1M customers 9.5M keys a month, 137M for a first month). NULL (older loads): listed there.
    "alter table raw.batch_lineage add column if not exists member_rows_added boolean",
    # the SHA-256 of the run's source files (tiering.operations.manifest_fingerprint; set by finish_run): with
    # rule_version, what `tiering backfill` compares to skip a month whose inputs have not changed
    "alter table audit.runs add column if not exists source_fingerprint varchar",
    # who runs a run and when it was last seen alive: the next run marks a dead run 'abandoned'
    # (tiering.runs.abandon_dead_runs); pid only when one process runs the whole DAG run (tiering run)
    "alter table audit.runs add column if not exists pid integer",
    "alter table audit.runs add column if not exists host varchar",
    "alter table audit.runs add column if not exists heartbeat_at timestamp",
    _batch_members_ddl(),
]


def batch_rows_sql(table: str) -> str:
    """SQL with two parameters, both the run id: the raw rows of `table` in that run's as-of batch
    (the rows it loaded itself and, for a delta, those of its base run's batch; as dbt's staging
    macro run_batch_rows reads them): the member batches' rows listed in raw.batch_rows, and the
    raw rows added by the members whose rows were all new."""
    return f"""select * from raw.{table} where _row_key in (
        select batch_rows.row_key
        from raw.batch_rows as batch_rows
        inner join raw.batch_lineage as lineage
            on lineage.member_batch_id = batch_rows.batch_id and lineage.source_table = batch_rows.source_table
        where lineage.batch_id = ? and lineage.source_table = '{table}')
    or _first_batch_id in (
        select lineage.member_batch_id
        from raw.batch_lineage as lineage
        where lineage.batch_id = ? and lineage.source_table = '{table}' and lineage.member_rows_added)"""


def tables_loaded_all_new(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """The tables whose rows loaded by run `run_id` were all new to raw (loaded_rows = new_raw_rows):
    its own rows of them are then the rows it added to raw (dbt's run_batch_rows finds them by
    raw._first_batch_id)."""
    return [r[0] for r in con.execute("select source_table from audit.load_batches where run_id = ? "
                                      "and loaded_rows = new_raw_rows order by 1", [run_id]).fetchall()]


def take_staging_state(path: Path | str) -> tuple[str | None, str | None]:
    """(batch, code version) the staging tables were built for, forgotten at once: whoever
    rebuilds staging next (the pipeline, or an ad-hoc dbt build) records the new one only when it
    succeeds."""
    con = connect(path)
    try:
        ensure_schema(con)
        row = con.execute("select max(batch_id), max(code_version) from audit.staging_state").fetchone()
        con.execute("delete from audit.staging_state")
        return row[0], row[1]
    finally:
        con.close()


def record_staging_state(path: Path | str, batch_id: str, code_version: str, updated_in_place: bool = False) -> None:
    con = connect(path)
    try:
        con.execute("delete from audit.staging_state")
        con.execute("insert into audit.staging_state (batch_id, built_at, code_version, updated_in_place) "
                    "values (?, now(), ?, ?)", [batch_id, code_version, updated_in_place])
    finally:
        con.close()


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
    """UTC session, and the same DuckDB resource settings as dbt's profile (dbt_project/profiles.yml)
    when set: TIERING_DUCKDB_THREADS, _MEMORY_LIMIT and _TEMP_DIRECTORY."""
    con.execute("set TimeZone = 'UTC'")
    for setting, value in _env_settings().items():
        if str(con.execute(f"select current_setting('{setting}')").fetchone()[0]) != value:
            con.execute(f"set {setting} = '{value}'")  # temp_directory: once per database instance
    return con


def _env_settings() -> dict[str, str]:
    """The DuckDB resource settings given in the environment (see apply_settings)."""
    settings = {}
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
