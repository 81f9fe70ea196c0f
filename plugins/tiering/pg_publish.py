"""Publish a month's marts (schema `bi`) and audit trail (schema `audit`) to PostgreSQL.

BI tools and auditors read PostgreSQL, never the DuckDB file: the step reads what it
needs from the warehouse in one short read-only session, closes it, and only then talks
to PostgreSQL. Per month and atomic:

    1. COPY every table's rows into a session-private staging table (temp, CSV via Arrow);
    2. in ONE transaction: delete the month's rows from each target and insert them from
       staging (bi, audit and pii together), so a reader sees the old month or the new
       month, never half of one, and never waits (PostgreSQL readers are not blocked by
       writers).

What is copied, and how each target is replaced:

    bi.<every marts table with a month column>   rows of the month
    bi.<other marts tables>                       whole table (tier_policy, customer_tier_history)
    audit.customer_tier_results                   rows of the published run
    audit.run_partitions                          rows of the published run: the change-log partition
                                                  versions it read, with their fingerprints (its
                                                  landing manifest; audit.runs.landing_dir)
    audit.{dq_results,restatement_diffs}          rows of the month
    audit.{runs,rule_versions,run_alerts}         whole table (small)
    pii.customers                                 upsert by customer_id, newer versions win (from the
                                                  landing's personal change log, tiering.personal)
    pii.approvers                                 upsert by approver_key

Personal data: bi and audit carry no name, e-mail or phone. The approvers of tier
overrides appear as a pseudonymous key (override_approved_by_key, made in the warehouse:
tiering.pseudonym), which pii.approvers maps back. Error and alert messages
(audit.runs.message, audit.run_alerts.message) may quote row values: e-mail addresses and
phone numbers are scrubbed out of them (tiering.pii) here too, for messages written before
they were scrubbed at the source. Every table with a
customer_id also gets `customer_key`, a keyed pseudonym (tiering.pseudonym) that is
stable across months. `customer_id` itself stays in bi: it is the internal business id
(not personal data per CONTRACT.md), account managers act on it, and `customer_code`
already embeds its sequence, so dropping it would hide nothing. Names, e-mails and
phones live only in `pii.customers` (approvers in `pii.approvers`), which neither reader role
can reach.

Connection (first match wins): --dsn, $TIERING_BI_DSN, $TIERING_PG_DSN (compose's
name), the Airflow connection `tiering_bi`. Nothing configured, or the server not
reachable: the step is skipped with a message (a DAG run never fails for that).
Configured and reachable but failing (no database, a permission): TieringError.
With $TIERING_BI_ADMIN_DSN set, the database and roles are created/updated first
(deploy/postgres/init/01_roles.sql, the one migration; `ensure_database`).
"""
from __future__ import annotations

import io
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tiering.errors import TieringError
from tiering.runspec import RunSpec, parse_month
from tiering.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

DSN_ENV = "TIERING_BI_DSN"
LEGACY_DSN_ENV = "TIERING_PG_DSN"          # the name docker-compose.yml sets
ADMIN_DSN_ENV = "TIERING_BI_ADMIN_DSN"
AIRFLOW_CONN_ID = "tiering_bi"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
WRITER_ROLE = "tiering_writer"
ROLES_SQL = PROJECT_ROOT / "deploy" / "postgres" / "init" / "01_roles.sql"
CONNECT_TIMEOUT_SECONDS = 5

# audit tables copied, and how each one's target rows are chosen
AUDIT_TABLES = {
    "runs": "all",
    "rule_versions": "all",
    "run_alerts": "all",
    "dq_results": "month",
    "restatement_diffs": "month",
    "customer_tier_results": "run",
}
PII_COLUMNS = ("customer_id", "customer_key", "name", "email", "phone", "updated_at")
PERSONAL_COLUMNS = frozenset({"name", "email", "phone", "approver", "override_approver"})
# free-text columns that may quote row values: e-mail addresses and phone numbers scrubbed (tiering.pii)
SCRUBBED_COLUMNS = {("audit", "runs"): ("message",), ("audit", "run_alerts"): ("message",)}

# DuckDB type -> PostgreSQL type (DECIMAL(p, s) -> numeric(p, s)); anything else is text. The one
# map of the project: publishing (here) and the other targets' run (tiering.targets) use it.
_PG_TYPES = {
    "VARCHAR": "text", "DATE": "date", "BOOLEAN": "boolean", "BIGINT": "bigint", "INTEGER": "integer",
    "SMALLINT": "smallint", "TINYINT": "smallint", "DOUBLE": "double precision", "FLOAT": "real",
    "TIMESTAMP WITH TIME ZONE": "timestamptz", "TIMESTAMP": "timestamp", "JSON": "jsonb",
    "HUGEINT": "numeric(38, 0)", "UBIGINT": "numeric(20, 0)", "UINTEGER": "bigint",
}


class NotReachable(Exception):
    """No PostgreSQL configured or reachable: the publish step is skipped, never failed."""


@dataclass
class Table:
    """One table to publish: its rows (Arrow), PostgreSQL column types, and which target rows it replaces."""

    schema: str
    name: str
    columns: list[tuple[str, str]]          # (column, PostgreSQL type)
    rows: object                            # pyarrow.Table
    scope: str                              # "month" | "run" | "all" | "upsert"
    indexes: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"{self.schema}.{self.name}"


# --------------------------------------------------------------------------- connection

def resolve_dsn(explicit: str | None = None) -> tuple[str | None, str]:
    """(dsn, where it came from); dsn None when nothing is configured."""
    if explicit:
        return explicit, "--dsn"
    for env in (DSN_ENV, LEGACY_DSN_ENV):
        if os.environ.get(env):
            return os.environ[env], f"${env}"
    try:  # an Airflow connection (AIRFLOW_CONN_TIERING_BI, a secrets backend or the metadata DB)
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(AIRFLOW_CONN_ID)
    except Exception:  # not defined, or no Airflow here: not configured
        return None, ""
    from psycopg.conninfo import make_conninfo

    params = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password,
              "dbname": conn.schema}
    return make_conninfo(**{k: v for k, v in params.items() if v}), f"Airflow connection {AIRFLOW_CONN_ID}"


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "<unparseable DSN>"
    return (f"postgresql://{parts.get('user', '')}@{parts.get('host', 'localhost')}:{parts.get('port', 5432)}"
            f"/{parts.get('dbname', '')}")


def _check_reachable(dsn: str) -> None:
    """Raise NotReachable when no server answers at the DSN's host and port (a TCP probe)."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    host, port = str(parts.get("host") or "localhost"), int(parts.get("port") or 5432)
    if host.startswith("/"):  # a unix socket directory
        if not Path(host, f".s.PGSQL.{port}").exists():
            raise NotReachable(f"no PostgreSQL socket in {host} (port {port})")
        return
    try:
        socket.create_connection((host.split(",")[0], port), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as exc:
        raise NotReachable(f"no PostgreSQL answers at {host}:{port} ({exc})") from exc


def _connect(dsn: str, **kwargs):
    import psycopg

    try:
        return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_SECONDS, **kwargs)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        hint = (f"create it with the admin DSN: set {ADMIN_DSN_ENV} (e.g. {DEFAULT_ADMIN_DSN})"
                if "does not exist" in str(exc) else "check the DSN, the role's password and pg_hba.conf")
        raise TieringError(f"cannot connect to PostgreSQL {redact(dsn)}: {reason}; {hint}") from exc


# --------------------------------------------------------------------------- migration

def migration_sql() -> str:
    """deploy/postgres/init/01_roles.sql without psql's backslash commands (plain SQL, run as one batch)."""
    return "\n".join(line for line in ROLES_SQL.read_text().splitlines() if not line.lstrip().startswith("\\"))


def ensure_database(dbname: str = "tiering", admin_dsn: str | None = None) -> None:
    """Create the database if missing and apply the roles/schemas/grants migration, as the admin DSN.

    Idempotent (a fraction of a second); the same script compose's warehouse-postgres runs on its first start.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    admin_dsn = admin_dsn or os.environ.get(ADMIN_DSN_ENV) or DEFAULT_ADMIN_DSN
    try:
        with _connect(admin_dsn, autocommit=True) as admin:
            exists = admin.execute("select 1 from pg_database where datname = %s", [dbname]).fetchone()
            if not exists:
                admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
        with _connect(make_conninfo(admin_dsn, dbname=dbname), autocommit=True) as con:
            con.execute(migration_sql())
    except psycopg.Error as exc:
        raise TieringError(f"cannot set up database {dbname!r} with the admin DSN {redact(admin_dsn)}: "
                           f"{str(exc).strip()}; the admin role needs CREATEDB and CREATEROLE") from exc


# --------------------------------------------------------------------------- reading DuckDB

def pg_type(duck_type: str) -> str:
    """The PostgreSQL type a DuckDB column is written as."""
    if duck_type.startswith("DECIMAL"):
        return duck_type.replace("DECIMAL", "numeric")
    return _PG_TYPES.get(duck_type, "text")


def copy_arrow(pg, target, columns: list[str], batches) -> int:
    """COPY Arrow rows (a Table, or an iterable of RecordBatches read in chunks) into `target` (a
    psycopg sql.Composable naming the table): CSV written by Arrow, in which a null is an unquoted
    empty field and an empty text a quoted one, as COPY's CSV format reads them. Returns the rows
    copied. The one COPY path of the project (publishing, and tiering.targets' landing and keys)."""
    import pyarrow.csv as pacsv
    from psycopg import sql

    statement = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    rows = 0
    with pg.cursor().copy(statement) as cp:
        for batch in ([batches] if hasattr(batches, "num_rows") else batches):
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
            cp.write(buffer.getvalue())
            rows += batch.num_rows
    return rows


def _select_list(columns: list[tuple[str, str]]) -> str:
    """Columns as Arrow/CSV can carry them: JSON, lists, structs and the like as text."""
    native = {"VARCHAR", "DATE", "BOOLEAN", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT",
              "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"}
    return ", ".join(c if (t in native or t.startswith("DECIMAL")) else f"cast({c} as varchar) as {c}"
                     for c, t in columns)


def _columns(con, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute("""select column_name, data_type from information_schema.columns
                          where table_schema = ? and table_name = ? and table_catalog = current_database()
                          order by ordinal_position""", [schema, table]).fetchall()


class _CustomerKeys:
    """The pseudonymous keys (tiering.pseudonym) of the customer ids of the tables one publish
    reads, looked up by column (Arrow) rather than computed per row per table: the keys the
    potential step keeps in `potential.customer_keys` when they are the current secret's (one
    stored key is computed again to tell), and those of other ids computed once per publish."""

    def __init__(self, con):
        import pyarrow as pa

        from tiering.pseudonym import stored_keys_current

        self.ids, self.keys = pa.array([], pa.string()), pa.array([], pa.string())
        if _columns(con, "potential", "customer_keys") and stored_keys_current(con):
            known = con.sql("select customer_id, customer_key from potential.customer_keys").to_arrow_table()
            self.ids = known.column("customer_id").combine_chunks()
            self.keys = known.column("customer_key").combine_chunks()

    def of(self, ids):
        """The keys of `ids` (an Arrow column of text, nulls allowed), in their order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from tiering.pseudonym import customer_keys

        ids = (pa.chunked_array([ids]) if isinstance(ids, pa.Array) else ids).cast(pa.string())
        missing = pc.unique(pc.filter(ids, pc.invert(pc.fill_null(pc.is_in(ids, value_set=self.ids), True))))
        if len(missing):
            self.ids = pa.concat_arrays([self.ids, missing.cast(pa.string())])
            self.keys = pa.concat_arrays([self.keys, pa.array(customer_keys(missing.to_pylist()), pa.string())])
        return pc.take(self.keys, pc.index_in(ids, value_set=self.ids))


def _with_customer_key(rows, columns: list[tuple[str, str]], keys: _CustomerKeys):
    """Add `customer_key` right after `customer_id` (HMAC pseudonym, tiering.pseudonym)."""
    names = [c for c, _ in columns]
    if "customer_id" not in names or "customer_key" in names:
        return rows, [(c, pg_type(t)) for c, t in columns]
    position = names.index("customer_id") + 1
    keys = keys.of(rows.column("customer_id"))
    pg_columns = [(c, pg_type(t)) for c, t in columns]
    pg_columns.insert(position, ("customer_key", "text"))
    return rows.add_column(position, "customer_key", keys), pg_columns


def read_month(warehouse: Path, month: date, run_id: str | None = None) -> tuple[str, list[Table]]:
    """(run_id, tables) of the month from the warehouse, in one short read-only session: the run
    `run_id` (the DAG's publish step: the run itself, its gates passed), else the month's last
    successful run (audit.runs); refused when the month has none, or when the marts hold another run
    of the month."""
    from tiering.personal import run_manifest
    from tiering.runs import last_successful_run, no_successful_run

    con = _open_warehouse(warehouse)
    try:
        found = con.execute("select distinct run_id from marts.customer_tier_monthly where month = ?",
                            [month]).fetchall() if _columns(con, "marts", "customer_tier_monthly") else []
        if run_id is None:
            run_id = last_successful_run(con, month)
            if run_id is None:
                raise no_successful_run(month, warehouse)
        if len(found) != 1:
            raise TieringError(f"no single result for {month:%Y-%m} in {warehouse} (runs: {len(found)}); "
                               f"run the month first (tiering run --month {month:%Y-%m})")
        if found[0][0] != run_id:
            raise TieringError(f"the marts of {warehouse} hold run {found[0][0]} of {month:%Y-%m}, not {run_id} "
                               f"(its last successful run); run `tiering run --month {month:%Y-%m}` again")
        keys = _CustomerKeys(con)
        tables = []
        marts = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "and table_catalog = current_database() order by 1").fetchall()]
        for name in marts:
            tables.append(_read_table(con, "marts", name, "bi", month, run_id, None, keys))
        existing = {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'audit' "
            "and table_catalog = current_database()").fetchall()}
        for name, scope in AUDIT_TABLES.items():
            if name in existing:
                tables.append(_read_table(con, "audit", name, "audit", month, run_id, scope, keys))
        tables.append(_run_partitions(run_id, month, run_manifest(con, run_id)))
        tables.append(_read_pii(con, run_id, keys))
        tables.append(_read_approvers(con))
    finally:
        con.close()
    return run_id, tables


def _read_table(con, schema: str, name: str, target_schema: str, month: date, run_id: str,
                scope: str | None, keys: _CustomerKeys) -> Table:
    columns = _columns(con, schema, name)
    names = {c for c, _ in columns}
    personal = names & PERSONAL_COLUMNS
    if personal:  # the marts gate forbids this already; never let it reach bi/audit
        raise TieringError(f"{schema}.{name} has personal data columns {sorted(personal)}; not published")
    scope = scope or ("month" if "month" in names else "all")
    where, params = {"month": ("where month = ?", [month]), "run": ("where run_id = ?", [run_id]),
                     "all": ("", [])}[scope]
    rows = con.sql(f"select {_select_list(columns)} from {schema}.{name} {where}", params=params).to_arrow_table()
    rows = _scrubbed(rows, SCRUBBED_COLUMNS.get((schema, name), ()))
    rows, pg_columns = _with_customer_key(rows, columns, keys)
    indexes = ["month"] if scope == "month" else ["run_id"] if scope == "run" else []
    return Table(target_schema, name, pg_columns, rows, scope, indexes)


def _scrubbed(rows, columns: tuple[str, ...]):
    """The rows with e-mail addresses and phone numbers replaced in these text columns (tiering.pii)."""
    import pyarrow as pa

    from tiering.pii import scrub

    for column in columns:
        if column in rows.column_names:
            position = rows.column_names.index(column)
            values = [scrub(v) for v in rows.column(column).to_pylist()]
            rows = rows.set_column(position, column, pa.array(values, pa.string()))
    return rows


def _read_approvers(con) -> Table:
    """The approvers of the overrides and their pseudonymous keys (potential.approver_keys)."""
    import pyarrow as pa

    rows = (con.sql("select approver_key, min(approver) as approver from potential.approver_keys "
                    "group by approver_key order by approver_key").to_arrow_table()
            if _columns(con, "potential", "approver_keys") else
            pa.table({"approver_key": pa.array([], pa.string()), "approver": pa.array([], pa.string())}))
    return Table("pii", "approvers", [("approver_key", "text"), ("approver", "text")], rows, "upsert")


RUN_PARTITION_COLUMNS = [("run_id", "text"), ("month", "date"), ("source_table", "text"), ("source_file", "text"),
                         ("source_sha256", "text"), ("landing_partition", "text"), ("version", "integer"),
                         ("rows", "bigint"), ("content_hash", "text"), ("landed_by", "text")]


def _run_partitions(run_id: str, month: date, manifest: dict) -> Table:
    """audit.run_partitions: what the run read, one row per change-log partition version (the audit
    trail that audit.load_batches, one row per landed batch, was before the change log)."""
    import pyarrow as pa

    rows = [(run_id, month, name, t.get("source_file"), t.get("source_sha256"), partition, v["version"], v["rows"],
             v["hash"], v.get("landed_by"))
            for name, t in sorted(manifest["tables"].items()) for partition, v in sorted(t["partitions"].items())]
    types = {"text": pa.string(), "date": pa.date32(), "integer": pa.int32(), "bigint": pa.int64()}
    table = pa.table({c: pa.array([r[i] for r in rows], types[t]) for i, (c, t) in enumerate(RUN_PARTITION_COLUMNS)})
    return Table("audit", "run_partitions", RUN_PARTITION_COLUMNS, table, "run", ["run_id"])


def _read_pii(con, run_id: str, keys: _CustomerKeys) -> Table:
    """Each customer's contact data as of the month end, from the personal change log the run read
    (tiering.personal.contact_sql); the customers `tiering forget` erased are left out (their
    values are NULL there, and no row of theirs is made again)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from tiering.personal import contact_sql, forgotten_keys, landing_root_of, read_run_manifest, run_manifest_path

    path = run_manifest_path(con, run_id)
    rows = con.sql(contact_sql(read_run_manifest(run_id, path))).to_arrow_table()
    rows = rows.add_column(1, "customer_key", keys.of(rows.column("customer_id")))
    erased = forgotten_keys(landing_root_of(path))
    if erased:
        rows = rows.filter(pc.invert(pc.is_in(rows.column("customer_key"), value_set=pa.array(sorted(erased)))))
    columns = [("customer_id", "text"), ("customer_key", "text"), ("name", "text"), ("email", "text"),
               ("phone", "text"), ("updated_at", "timestamptz")]
    return Table("pii", "customers", columns, rows, "upsert")


# --------------------------------------------------------------------------- writing PostgreSQL

def _ident(*parts: str):
    from psycopg import sql

    return sql.Identifier(*parts)


def _ensure_target(pg, table: Table) -> None:
    """Create the target if missing (as tiering_writer, so default privileges grant the readers);
    add columns that appeared in DuckDB since (older months get NULL there)."""
    from psycopg import sql

    existing = {r[0]: r[1] for r in pg.execute(
        "select column_name, data_type from information_schema.columns where table_schema = %s "
        "and table_name = %s", [table.schema, table.name]).fetchall()}
    target = _ident(table.schema, table.name)
    if not existing:
        defs = [sql.SQL("{} {}").format(_ident(c), sql.SQL(t)) for c, t in table.columns]
        if table.scope == "upsert":
            defs[0] = sql.SQL("{} text primary key").format(_ident(table.columns[0][0]))
        pg.execute(sql.SQL("create table {} ({})").format(target, sql.SQL(", ").join(defs)))
        for column in table.indexes:
            pg.execute(sql.SQL("create index {} on {} ({})").format(
                _ident(f"{table.name}_{column}_idx"), target, _ident(column)))
        return
    for column, pg_type in table.columns:
        if column not in existing:
            pg.execute(sql.SQL("alter table {} add column {} {}").format(target, _ident(column), sql.SQL(pg_type)))


def _migrate_approver_columns(pg) -> None:
    """Tables published when they carried the approver itself (`override_approver`): the column is
    replaced by `override_approved_by_key`, the approver's key (tiering.pseudonym), in every row."""
    from psycopg import sql

    from tiering.pseudonym import approver_key

    for schema, name in pg.execute("select table_schema, table_name from information_schema.columns "
                                   "where table_schema in ('bi', 'audit') and column_name = 'override_approver'"
                                   ).fetchall():
        target = _ident(schema, name)
        pg.execute(sql.SQL("alter table {} add column if not exists override_approved_by_key text").format(target))
        for (approver,) in pg.execute(sql.SQL("select distinct override_approver from {} "
                                              "where override_approver is not null").format(target)).fetchall():
            pg.execute(sql.SQL("update {} set override_approved_by_key = %s where override_approver = %s")
                       .format(target), [approver_key(approver), approver])
        pg.execute(sql.SQL("alter table {} drop column override_approver").format(target))


def _stage(pg, table: Table) -> str:
    """COPY the rows into a temp table of the session; returns its name."""
    from psycopg import sql

    stage = f"stage_{table.schema}_{table.name}"
    pg.execute(sql.SQL("drop table if exists {}").format(_ident(stage)))
    pg.execute(sql.SQL("create temp table {} ({})").format(_ident(stage), sql.SQL(", ").join(
        sql.SQL("{} {}").format(_ident(c), sql.SQL(t)) for c, t in table.columns)))
    copy_arrow(pg, _ident(stage), [c for c, _ in table.columns], table.rows)
    return stage


def _swap(pg, table: Table, stage: str, month: date, run_id: str) -> None:
    """Replace the table's rows for the month / run / whole table with the staged ones."""
    from psycopg import sql

    target = _ident(table.schema, table.name)
    columns = sql.SQL(", ").join(_ident(c) for c, _ in table.columns)
    if table.scope == "upsert":  # by the first column; newer versions win where rows carry updated_at
        updates = sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(_ident(c)) for c, _ in table.columns[1:])
        newer = (sql.SQL("where {0}.updated_at is null or {0}.updated_at <= excluded.updated_at").format(target)
                 if "updated_at" in dict(table.columns) else sql.SQL(""))
        pg.execute(sql.SQL("""insert into {target} ({columns}) select {columns} from {stage}
                              on conflict ({key}) do update set {updates} {newer}""")
                   .format(target=target, columns=columns, stage=_ident(stage), updates=updates,
                           key=_ident(table.columns[0][0]), newer=newer))
        return
    if table.scope == "month":
        pg.execute(sql.SQL("delete from {} where month = %s").format(target), [month])
    elif table.scope == "run":
        pg.execute(sql.SQL("delete from {} where run_id = %s").format(target), [run_id])
    else:
        pg.execute(sql.SQL("delete from {}").format(target))
    pg.execute(sql.SQL("insert into {} ({}) select {} from {}").format(target, columns, columns, _ident(stage)))


def write_month(dsn: str, month: date, run_id: str, tables: list[Table]) -> None:
    """Stage every table, then swap them all in one transaction."""
    import psycopg

    with _connect(dsn, autocommit=True) as pg:
        try:
            user, is_writer = pg.execute("select current_user, pg_has_role(current_user, %s, 'member')",
                                         [WRITER_ROLE]).fetchone()
            if user != WRITER_ROLE and is_writer:  # e.g. a superuser: create as the writer all the same
                pg.execute(f"set role {WRITER_ROLE}")
            with pg.transaction():
                _migrate_approver_columns(pg)
                for table in tables:
                    _ensure_target(pg, table)
            stages = {table.target: _stage(pg, table) for table in tables}
            with pg.transaction():  # the swap: readers see the whole month or the previous state
                for table in tables:
                    _swap(pg, table, stages[table.target], month, run_id)
        except psycopg.Error as exc:
            detail = str(exc).strip().splitlines()[0]
            hint = ("the tables must belong to tiering_writer: connect as tiering_writer (or a member of it)"
                    if isinstance(exc, psycopg.errors.InsufficientPrivilege) else
                    f"check {redact(dsn)} and deploy/postgres/init/01_roles.sql")
            raise TieringError(f"publishing {month:%Y-%m} to PostgreSQL failed: "
                               f"{type(exc).__name__}: {detail}; {hint}") from exc


# --------------------------------------------------------------------------- entry points

def publish(warehouse: Path, month: date, dsn: str | None = None, run_id: str | None = None) -> dict:
    """Publish one month (the run `run_id`, else the month's last successful run); raises
    NotReachable when there is nothing to publish to."""
    if run_id is None:   # checked before looking for PostgreSQL: the first thing wrong
        run_id = _require_successful_run(warehouse, month)
    dsn, origin = resolve_dsn(dsn)
    if not dsn:
        raise NotReachable(f"no PostgreSQL configured: set {DSN_ENV} (e.g. postgresql://tiering_writer@"
                           f"127.0.0.1:5432/tiering) or an Airflow connection {AIRFLOW_CONN_ID!r}")
    try:
        _check_reachable(dsn)
    except NotReachable as exc:
        raise NotReachable(f"{exc} (DSN from {origin}: {redact(dsn)}); start PostgreSQL or unset {DSN_ENV}") \
            from exc
    admin = os.environ.get(ADMIN_DSN_ENV)
    if admin:
        from psycopg.conninfo import conninfo_to_dict

        ensure_database(conninfo_to_dict(dsn).get("dbname") or "tiering", admin)
    started = time.monotonic()
    run_id, tables = read_month(warehouse, month, run_id)    # DuckDB is closed again before PostgreSQL
    read_seconds = time.monotonic() - started
    write_month(dsn, month, run_id, tables)
    seconds = time.monotonic() - started
    rows = {t.target: t.rows.num_rows for t in tables}
    log.info(f"published {month:%Y-%m} (run {run_id}) to PostgreSQL {redact(dsn)}: {len(tables)} tables, "
             f"{sum(rows.values())} rows in {seconds:.2f} s (DuckDB read {read_seconds:.2f} s)")
    return {"dsn": redact(dsn), "month": f"{month:%Y-%m}", "run_id": run_id, "rows": rows,
            "seconds": round(seconds, 3)}


def _open_warehouse(warehouse: Path):
    """The live warehouse, read-only, or a TieringError saying why not."""
    from tiering.warehouse import connect

    if not Path(warehouse).exists():
        raise TieringError(f"warehouse {warehouse} not found; run the month first (tiering run)")
    try:
        return connect(warehouse, read_only=True)
    except Exception as exc:  # e.g. a run holds the write lock
        raise TieringError(f"cannot read {warehouse}: {exc}; retry when the running pipeline step is done") from exc


def _require_successful_run(warehouse: Path, month: date) -> str:
    """The month's last successful run, which the marts must hold (else TieringError)."""
    from tiering.runs import require_successful_run

    con = _open_warehouse(warehouse)
    try:
        run_id = require_successful_run(con, month, warehouse)
        found = [r[0] for r in con.execute("select distinct run_id from marts.customer_tier_monthly where month = ?",
                                           [month]).fetchall()
                 ] if _columns(con, "marts", "customer_tier_monthly") else []
    finally:
        con.close()
    if found and found != [run_id]:
        raise TieringError(f"the marts of {warehouse} hold run {', '.join(found)} of {month:%Y-%m}, not {run_id} "
                           f"(its last successful run); run `tiering run --month {month:%Y-%m}` again")
    return run_id


def publish_month(spec: RunSpec) -> dict:
    """The DAG step: publish the run's month, or skip (with the reason) when no PostgreSQL is there
    or the month is provisional (BI reads final months only)."""
    if spec.provisional:
        message = (f"{spec.month_text} has not ended (provisional run): BI in PostgreSQL keeps final months only; "
                   f"run the month again once it has ended to publish it")
        log.warning(f"publish_postgres skipped: {message}")
        return {"skipped": message}
    try:
        return publish(spec.warehouse, spec.month, run_id=spec.run_id)
    except NotReachable as exc:
        message = f"publish_postgres skipped: {exc}"
        log.warning(message)
        return {"skipped": str(exc)}


def cli_publish(args) -> None:
    """`tiering publish-postgres --month M [--warehouse FILE] [--dsn DSN]`: asked for explicitly, so no skip."""
    month = parse_month(args.month)
    if _is_provisional(args.warehouse, month):
        raise TieringError(f"{args.month} is provisional in {args.warehouse} (run before the month ended): it is "
                           f"never published to PostgreSQL; run the month again once it has ended")
    try:
        result = publish(args.warehouse, month, args.dsn)
    except NotReachable as exc:
        raise TieringError(f"cannot publish to PostgreSQL: {exc}") from exc
    print(f"published {result['month']} (run {result['run_id']}) to PostgreSQL {result['dsn']}: "
          f"{len(result['rows'])} tables, {sum(result['rows'].values())} rows in {result['seconds']:.2f} s")


def _is_provisional(warehouse: Path, month: date) -> bool:
    """Whether the month's rows in marts.customer_tier_monthly come from a provisional run."""
    import duckdb

    from tiering.warehouse import connect

    if not Path(warehouse).exists():
        return False
    con = connect(warehouse, read_only=True)
    try:
        row = con.execute("select bool_or(is_provisional) from marts.customer_tier_monthly where month = ?",
                          [month]).fetchone()
    except duckdb.Error:  # no marts yet, or built before the column existed
        return False
    finally:
        con.close()
    return bool(row and row[0])
