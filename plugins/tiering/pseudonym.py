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


def refresh_approver_keys(con) -> int:
    """Write the key of every approver of the overrides in staging into potential.approver_keys
    (approver, approver_key), replacing the table: a few rows, read by the marts (dbt source
    potential.approver_keys) and published to PostgreSQL's pii.approvers. Returns the row count."""
    con.execute(APPROVER_KEYS_DDL)
    staged = con.execute("select count(*) from information_schema.tables where table_schema = 'staging' "
                         "and table_name = 'stg_raw__tier_overrides' and table_catalog = current_database()"
                         ).fetchone()[0]
    approvers = [r[0] for r in con.execute(
        "select distinct override_approver from staging.stg_raw__tier_overrides "
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
