"""Pseudonymous customer keys for everything that leaves the warehouse (BI in PostgreSQL, CRM files).

    customer_key("C000123") -> "k_3f9a..." (HMAC-SHA256 of the id, 20 hex characters)

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
HEX_CHARS = 20


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
