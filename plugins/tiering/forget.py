"""`tiering forget --customer ID [--warehouse FILE] [--dsn DSN]`: erase one person's personal data
(name, e-mail, phone) everywhere the project keeps it. Tiers, history and audit keep the customer
id and its pseudonymous key; no result changes.

In this order (the command holds the warehouse's lock, so no run lands meanwhile):
  1. the forget list (<landing root>/_forgotten.json, tiering.personal): the customer's key goes on
     it first, so that whatever happens next, no later landing (a new month, a --restate, the
     partition `unparseable`) lands their personal data again, and no publish puts a row of theirs
     back into pii.customers;
  2. the landing: every personal file holding a value of theirs (any version of any
     customers_personal partition, leftovers of killed landings under _tmp/, and the customers.parquet
     of the previous core's landing folders landing/<run_id>/, tiering.migrate) is rewritten with
     their name, e-mail and phone NULL, atomically, read-only again. The change log proper holds no
     personal column, and no fingerprint covers the personal files: the catalog, the manifests,
     the input checksums and the restatement check stay as they were;
  3. the warehouse: a table with a personal column and customer_id has them set NULL for the
     customer (there is none: staging never selects them, gate (c) refuses them in marts, and the
     quarantine's records of customers are built from the change log without them); the text
     columns that may quote row values (quarantine.rejected_rows.record, audit.runs.message,
     audit.run_alerts.message) have the person's values replaced by <erased>; then a checkpoint;
  4. the published copy BI reads: the same check and erasure (it holds the marts only: nothing);
  5. PostgreSQL, when configured (--dsn, $TIERING_BI_DSN, $TIERING_PG_DSN, the Airflow connection
     tiering_bi): the customer's row of pii.customers is deleted, and their values replaced by
     <erased> in audit.runs / audit.run_alerts messages. Configured but not reachable: the rest is
     done, and the command fails saying so; run it again when PostgreSQL is back;
  6. logs and GX Data Docs (tiering.retention.log_dirs, <warehouse dir>/gx_docs): any file quoting
     one of the person's values (as found in step 2, before they were blanked) has each occurrence
     overwritten in place by as many '*' (same length: a process appending to the log is not
     disturbed). By design no log holds personal data (rows are never logged, messages are
     scrubbed, tiering.pii); this catches what slipped through. Values shorter than
     MIN_VALUE_CHARS are not searched for (they would match unrelated text).
Not touched: the source directory (the source system's export: erase the person there too; the
forget list keeps the landing clean meanwhile), files people exported (`crm-export
--include-contact` output), backups. Deleted values may stay in free blocks of the DuckDB file and
in PostgreSQL's dead tuples until they are overwritten (VACUUM FULL pii.customers erases them there).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from tiering.errors import TieringError
from tiering.personal import PERSONAL_COLUMNS, add_to_forget_list, blank_rows, forget_list_path, personal_files
from tiering.settings import landing_root
from tiering.source import sql_literal

log = logging.getLogger(__name__)

ERASED = "<erased>"
MIN_VALUE_CHARS = 5
REGEX_SPECIAL = set(".^$*+?()[]{}|\\-/")
# free-text columns that may quote a row's values (an error message, a rejected record)
TEXT_COLUMNS = (("quarantine", "rejected_rows", "record"), ("audit", "runs", "message"),
                ("audit", "run_alerts", "message"))


@dataclass
class Erasure:
    """What `forget` erased where (counts), for the summary line and the tests."""

    customer_id: str
    key: str = ""
    newly_listed: bool = False
    landing_files: int = 0
    landing_rows: int = 0
    warehouse: dict = field(default_factory=dict)      # {"columns": rows blanked, "quoted": values replaced}
    published: dict = field(default_factory=dict)
    postgres: str = ""
    postgres_pending: str | None = None                # why PostgreSQL was not reached
    log_files: int = 0
    log_files_scanned: int = 0
    values_searched: int = 0


# --------------------------------------------------------------------------- landing

def _erase_landing(root: Path, customer_id: str, erasure: Erasure) -> list[str]:
    """Blank the customer's rows in every personal file; returns their distinct values (before)."""
    import duckdb

    from tiering.migrate import old_landing_folders
    from tiering.warehouse import apply_settings

    # (and the customers of the previous core's landing folders, landing/<run_id>/, kept by tiering migrate)
    files = personal_files(root) + [f / "customers.parquet" for f in old_landing_folders(root)
                                    if (f / "customers.parquet").is_file()]
    if not files:
        return []
    con = apply_settings(duckdb.connect())
    try:
        listed = ", ".join(sql_literal(str(f)) for f in files)
        personal = ", ".join(PERSONAL_COLUMNS)
        rows = con.execute(f"select {personal} from read_parquet([{listed}], hive_partitioning = false) "
                           f"where customer_id = ?", [customer_id]).fetchall()
        values = sorted({str(v).strip() for row in rows for v in row if v is not None and str(v).strip()})
        rewritten = blank_rows(con, files, [customer_id])
    finally:
        con.close()
    erasure.landing_files, erasure.landing_rows = len(rewritten), sum(rewritten.values())
    return values


# --------------------------------------------------------------------------- DuckDB files

def _searched(values: list[str]) -> list[str]:
    """The values looked for in free text (in any case): those long enough to mean the person."""
    return sorted({v for v in values if len(v) >= MIN_VALUE_CHARS}, key=len, reverse=True)   # longest first


def _pattern(value: str) -> str:
    """A regular expression matching `value` literally (RE2 in DuckDB, ARE in PostgreSQL alike)."""
    return "".join("\\" + c if c in REGEX_SPECIAL else c for c in value)


def _duckdb_targets(con, customer_id: str, values: list[str]) -> tuple[list, list]:
    """([(table, personal columns)] holding the customer's personal values, [(table, column, value)]
    quoting a value) in an open DuckDB database."""
    tables: dict[str, list[str]] = {}
    for schema, table, column in con.execute(
            "select c.table_schema, c.table_name, c.column_name from information_schema.columns c "
            "join information_schema.tables t using (table_catalog, table_schema, table_name) "
            "where c.table_catalog = current_database() and t.table_type = 'BASE TABLE'").fetchall():
        tables.setdefault(f"{schema}.{table}", []).append(column)
    held = []
    for table, columns in sorted(tables.items()):
        personal = [c for c in columns if c in PERSONAL_COLUMNS]
        if personal and "customer_id" in columns:
            where = " or ".join(f"{c} is not null" for c in personal)
            if con.execute(f"select count(*) from {table} where customer_id = ? and ({where})",
                           [customer_id]).fetchall()[0][0]:
                held.append((table, personal))
    quoted = []
    for schema, table, column in TEXT_COLUMNS:
        if column in tables.get(f"{schema}.{table}", []):
            for value in values:
                if con.execute(f"select count(*) from {schema}.{table} "
                               f"where regexp_matches(cast({column} as varchar), ?, 'i')",
                               [_pattern(value)]).fetchall()[0][0]:
                    quoted.append((f"{schema}.{table}", column, value))
    return held, quoted


def _erase_duckdb(path: Path, customer_id: str, values: list[str]) -> dict:
    """Erase the customer's personal data in one DuckDB file (the warehouse, the published copy):
    looked for read-only first, written only when something is there."""
    from tiering.warehouse import connect

    if not Path(path).exists():
        return {"missing": True}
    con = connect(path, read_only=True)
    try:
        held, quoted = _duckdb_targets(con, customer_id, values)
    finally:
        con.close()
    result = {"tables": [t for t, _ in held], "columns": 0, "quoted": 0}
    if not held and not quoted:
        return result
    try:
        con = connect(path)
    except Exception as exc:  # e.g. a BI tool holds the published copy open
        raise TieringError(f"cannot write {path} to erase {customer_id}'s personal data ({exc}); close what "
                           f"holds it and run `tiering forget` again") from None
    try:
        con.execute("begin transaction")
        for table, personal in held:
            result["columns"] += con.execute(
                f"update {table} set {', '.join(f'{c} = null' for c in personal)} where customer_id = ?",
                [customer_id]).fetchall()[0][0]
        for table, column, value in quoted:
            result["quoted"] += con.execute(
                f"update {table} set {column} = regexp_replace(cast({column} as varchar), ?, ?, 'gi') "
                f"where regexp_matches(cast({column} as varchar), ?, 'i')",
                [_pattern(value), ERASED, _pattern(value)]).fetchall()[0][0]
        con.execute("commit")
        con.execute("checkpoint")
    finally:
        con.close()
    return result


# --------------------------------------------------------------------------- PostgreSQL

def _erase_postgres(dsn_arg: str | None, customer_id: str, key: str, values: list[str], erasure: Erasure) -> None:
    import psycopg
    from psycopg import sql

    from tiering import pg_publish

    dsn, origin = pg_publish.resolve_dsn(dsn_arg)
    if not dsn:
        erasure.postgres = "not configured"
        return
    try:
        pg_publish._check_reachable(dsn)
    except pg_publish.NotReachable as exc:
        erasure.postgres_pending = f"{exc} (DSN from {origin}: {pg_publish.redact(dsn)})"
        return
    try:
        with pg_publish._connect(dsn, autocommit=True) as pg:
            user, is_writer = pg.execute("select current_user, pg_has_role(current_user, %s, 'member')",
                                         [pg_publish.WRITER_ROLE]).fetchone()
            if user != pg_publish.WRITER_ROLE and is_writer:
                pg.execute(f"set role {pg_publish.WRITER_ROLE}")
            deleted = quoted = 0
            with pg.transaction():
                if pg.execute("select to_regclass('pii.customers')").fetchone()[0]:
                    deleted = pg.execute("delete from pii.customers where customer_id = %s or customer_key = %s",
                                         [customer_id, key]).rowcount
                for schema, table in (("audit", "runs"), ("audit", "run_alerts")):
                    if not pg.execute("select to_regclass(%s)", [f"{schema}.{table}"]).fetchone()[0]:
                        continue
                    for value in values:
                        quoted += pg.execute(sql.SQL("update {} set message = regexp_replace(message, %s, %s, 'gi') "
                                                     "where message ~* %s").format(sql.Identifier(schema, table)),
                                             [_pattern(value), ERASED, _pattern(value)]).rowcount
    except psycopg.Error as exc:
        raise TieringError(f"erasing {customer_id} in PostgreSQL {pg_publish.redact(dsn)} failed: "
                           f"{str(exc).strip().splitlines()[0]}; the role needs to own pii.customers "
                           f"(connect as {pg_publish.WRITER_ROLE}); run `tiering forget` again") from exc
    erasure.postgres = (f"{deleted} row(s) deleted from pii.customers"
                        + (f", {quoted} message(s) in audit" if quoted else "") + f" ({pg_publish.redact(dsn)})")


# --------------------------------------------------------------------------- logs

def _mask_files(folders: list[Path], values: list[str], erasure: Erasure) -> None:
    """Overwrite, in place and at the same length, each occurrence of a value in the text files."""
    needles = [re.compile(re.escape(v.encode()), re.IGNORECASE) for v in values]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            erasure.log_files_scanned += 1
            try:
                data = path.read_bytes()
            except OSError as exc:
                log.warning(f"{path} not searched for personal data: {exc}")
                continue
            offsets = [m.span() for needle in needles for m in needle.finditer(data)]
            if not offsets:
                continue
            with open(path, "r+b") as fh:
                for start, end in offsets:
                    fh.seek(start)
                    fh.write(b"*" * (end - start))
            erasure.log_files += 1


# --------------------------------------------------------------------------- the command

def forget(warehouse: Path, customer_id: str, dsn: str | None = None) -> Erasure:
    """Erase the customer's personal data everywhere (see the module's docstring)."""
    from tiering.publish import published_path
    from tiering.retention import gx_docs_root, log_dirs

    customer_id = customer_id.strip()
    if not customer_id:
        raise TieringError("--customer is empty: give the customer's id as in the source (e.g. C000123)")
    erasure = Erasure(customer_id)
    root = landing_root(warehouse)
    erasure.key, erasure.newly_listed = add_to_forget_list(root, customer_id)
    values = _erase_landing(root, customer_id, erasure)
    searched = _searched(values)
    erasure.values_searched = len(searched)
    erasure.warehouse = _erase_duckdb(Path(warehouse), customer_id, searched)
    erasure.published = _erase_duckdb(published_path(warehouse), customer_id, searched)
    _erase_postgres(dsn, customer_id, erasure.key, searched, erasure)
    if searched:
        _mask_files([*log_dirs(warehouse), gx_docs_root(warehouse)], searched, erasure)
    return erasure


def _duckdb_summary(result: dict) -> str:
    if result.get("missing"):
        return "none there"
    text = f"{result['columns']} row(s) blanked in {', '.join(result['tables'])}" if result["tables"] \
        else "no personal column"
    return text + (f", {result['quoted']} quoting value(s) replaced" if result["quoted"] else "")


def format_erasure(erasure: Erasure, warehouse: Path) -> str:
    listed = "added" if erasure.newly_listed else "already on it"
    logs = (f"{erasure.log_files} of {erasure.log_files_scanned} file(s) quoted them, masked"
            if erasure.values_searched else "not searched (no personal value of theirs left in the landing)")
    postgres = erasure.postgres or f"NOT reached: {erasure.postgres_pending}"
    return (f"forgot {erasure.customer_id} (key {erasure.key}): landing {erasure.landing_files} personal file(s) "
            f"rewritten, {erasure.landing_rows} row(s) blanked; warehouse: {_duckdb_summary(erasure.warehouse)}; "
            f"published copy: {_duckdb_summary(erasure.published)}; PostgreSQL: {postgres}; logs and GX docs: "
            f"{logs}; forget list {forget_list_path(landing_root(warehouse))}: {listed}")


def cli_forget(args) -> None:
    from tiering.locks import warehouse_lock

    with warehouse_lock(args.warehouse, "tiering forget", wait=False):
        erasure = forget(args.warehouse, args.customer, args.dsn)
    print(format_erasure(erasure, args.warehouse))
    if erasure.postgres_pending:
        raise TieringError(f"{erasure.customer_id}'s personal data is erased everywhere but in PostgreSQL: "
                           f"{erasure.postgres_pending}; run `tiering forget --customer {erasure.customer_id}` "
                           f"again when it is reachable")
