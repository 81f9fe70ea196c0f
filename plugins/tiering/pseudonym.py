"""Pseudonymous customer keys for everything that leaves the warehouse (BI in PostgreSQL, CRM files),
and pseudonymous approver keys for the people who approve tier overrides.

    customer_key("C000123") -> "k_3f9a..." (HMAC-SHA256 of the id, 20 hex characters)
    approver_key("jane.roe@example.com") -> "a_81c0..." (of the approver, trimmed and lower-cased)

Keyed with the secret in TIERING_PSEUDONYM_KEY, so the key cannot be reversed or recomputed
without it; the same id gives the same key in every month and every export (stable joins and
idempotent CRM upserts). The development default below is for demo data only: set a secret in
production (docker-compose reads it from .env).
"""
from __future__ import annotations

import hashlib
import hmac
import os

DEV_KEY = "tiering-dev-pseudonym-key-change-me"
KEY_ENV = "TIERING_PSEUDONYM_KEY"
PREFIX = "k_"
APPROVER_PREFIX = "a_"
HEX_CHARS = 20
APPROVER_KEYS_TABLE = "potential.approver_keys"
APPROVER_KEYS_DDL = f"""create table if not exists {APPROVER_KEYS_TABLE} (
    approver varchar not null, approver_key varchar not null)"""


def _secret() -> bytes:
    return (os.environ.get(KEY_ENV) or DEV_KEY).encode()


def customer_key(customer_id: str) -> str:
    """The pseudonymous key of one customer id."""
    digest = hmac.new(_secret(), str(customer_id).encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARS]


def customer_keys(customer_ids) -> list[str]:
    """Keys for many ids (one secret lookup)."""
    secret = _secret()
    return [PREFIX + hmac.new(secret, str(c).encode(), hashlib.sha256).hexdigest()[:HEX_CHARS]
            for c in customer_ids]


def stored_keys_current(con, table: str = "potential.customer_keys") -> bool:
    """Whether the keys stored in `table` (customer_id, customer_key; kept by the potential step)
    are the current secret's: one of them is computed again. False when none is stored."""
    probe = next(iter(con.execute(f"select customer_id, customer_key from {table} "
                                  "order by customer_id limit 1").fetchall()), None)
    return probe is not None and customer_key(probe[0]) == probe[1]


def approver_key(approver: str) -> str:
    """The pseudonymous key of an override's approver (an e-mail address or a name): the marts and
    audit carry it instead of the approver; PostgreSQL's pii.approvers maps it back. The same
    approver, whatever the case or surrounding spaces, has one key; it never equals a customer key."""
    message = "approver:" + str(approver).strip().lower()
    return APPROVER_PREFIX + hmac.new(_secret(), message.encode(), hashlib.sha256).hexdigest()[:HEX_CHARS]


# The kept-per-month models that carried the approver itself before it became a key: a warehouse
# made then is migrated (approver -> its key) before the marts are built again.
APPROVER_COLUMN_TABLES = ("intermediate.int_customer_tier_months", "audit.customer_tier_results")
KEYED_MART = "marts.customer_tier_monthly"


def _columns_of(con, qualified: str) -> set[str]:
    schema, table = qualified.split(".")
    return {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "and table_catalog = current_database()", [schema, table]).fetchall()}


def migrate_approver_columns(con) -> list[str]:
    """A warehouse whose kept-per-month models hold `override_approver` (the approver itself): the
    column is replaced by `override_approved_by_key` (its key), and marts.customer_tier_monthly gets
    `override_approved_by_key` for the months it keeps (from the intermediate model); dbt's
    incremental models insert into the columns the table has, so without this the next build
    would fail (or leave the new column out). Returns the tables changed (none on a current one)."""
    changed = []
    for table in APPROVER_COLUMN_TABLES:
        if "override_approver" not in _columns_of(con, table):
            continue
        approvers = [r[0] for r in con.execute(
            f"select distinct override_approver from {table} where override_approver is not null").fetchall()]
        con.execute("create or replace temp table migrated_approver_keys (approver varchar, approver_key varchar)")
        if approvers:
            con.executemany("insert into migrated_approver_keys values (?, ?)",
                            [[a, approver_key(a)] for a in approvers])
        con.execute(f"alter table {table} add column if not exists override_approved_by_key varchar")
        con.execute(f"update {table} t set override_approved_by_key = k.approver_key from migrated_approver_keys k "
                    f"where k.approver = t.override_approver")
        con.execute(f"alter table {table} drop column override_approver")
        con.execute("drop table migrated_approver_keys")
        changed.append(table)
    mart_columns = _columns_of(con, KEYED_MART)
    if mart_columns and "override_approved_by_key" not in mart_columns:
        con.execute(f"alter table {KEYED_MART} add column override_approved_by_key varchar")
        if "override_approved_by_key" in _columns_of(con, APPROVER_COLUMN_TABLES[0]):
            con.execute(f"""update {KEYED_MART} m set override_approved_by_key = i.override_approved_by_key
                            from {APPROVER_COLUMN_TABLES[0]} i
                            where i.customer_id = m.customer_id and i.month = m.month""")
        changed.append(KEYED_MART)
    return changed


def refresh_approver_keys(con) -> int:
    """Write the key of every approver of the overrides in staging into potential.approver_keys
    (approver, approver_key), replacing the table: a few rows, read by the marts (dbt source
    potential.approver_keys) and published to PostgreSQL's pii.approvers. Returns the row count.
    Migrates a warehouse whose models still hold the approver first (`migrate_approver_columns`)."""
    migrated = migrate_approver_columns(con)
    if migrated:
        print(f"approvers replaced by their pseudonymous key in {', '.join(migrated)}")
    con.execute(APPROVER_KEYS_DDL)
    staged = con.execute("select count(*) from information_schema.tables where table_schema = 'intermediate' "
                         "and table_name = 'int_tier_overrides__as_of' and table_catalog = current_database()"
                         ).fetchone()[0]
    approvers = [r[0] for r in con.execute(
        "select distinct override_approver from intermediate.int_tier_overrides__as_of "
        "where override_approver is not null order by 1").fetchall()] if staged else []
    con.execute("begin transaction")
    try:
        con.execute(f"delete from {APPROVER_KEYS_TABLE}")
        if approvers:
            con.executemany(f"insert into {APPROVER_KEYS_TABLE} values (?, ?)",
                            [[a, approver_key(a)] for a in approvers])
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return len(approvers)
