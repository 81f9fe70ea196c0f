"""One-shot set-up of Metabase for the compose stack: admin user and the BI connection.

Points Metabase at the warehouse PostgreSQL as the read-only role `tiering_bi_reader`, schema
`bi` only, so a newcomer opens http://localhost:3000, logs in and finds the tier tables.
Idempotent: on a Metabase that is already set up it logs in and adds the connection only if it
is missing. Standard library only (runs in a plain python image).

Environment: MB_URL (default http://metabase:3000), METABASE_ADMIN_EMAIL,
METABASE_ADMIN_PASSWORD, TIERING_BI_READER_PASSWORD, WAREHOUSE_HOST (warehouse-postgres),
WAREHOUSE_DB (tiering).
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

DATABASE_NAME = "Tiering BI (schema bi, read-only)"


def call(base: str, method: str, path: str, body: dict | None = None, session: str | None = None):
    request = urllib.request.Request(base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"X-Metabase-Session": session} if session else {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


def wait_until_up(base: str, attempts: int = 60, delay: float = 5.0) -> None:
    for _ in range(attempts):
        try:
            if (call(base, "GET", "/api/health") or {}).get("status") == "ok":
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(delay)
    raise SystemExit(f"Metabase at {base} did not become healthy")


def bi_database(env: dict) -> dict:
    return {
        "engine": "postgres",
        "name": DATABASE_NAME,
        "details": {
            "host": env.get("WAREHOUSE_HOST", "warehouse-postgres"),
            "port": 5432,
            "dbname": env.get("WAREHOUSE_DB", "tiering"),
            "user": "tiering_bi_reader",
            "password": env["TIERING_BI_READER_PASSWORD"],
            "schema-filters-type": "inclusion",
            "schema-filters-patterns": "bi",
            "ssl": False,
        },
    }


def setup(env: dict, delay: float = 5.0) -> str:
    """Returns what was done: 'setup', 'added' or 'present'."""
    base = env.get("MB_URL", "http://metabase:3000").rstrip("/")
    wait_until_up(base, delay=delay)
    email, password = env["METABASE_ADMIN_EMAIL"], env["METABASE_ADMIN_PASSWORD"]
    token = (call(base, "GET", "/api/session/properties") or {}).get("setup-token")
    if token:
        call(base, "POST", "/api/setup", {
            "token": token,
            "user": {"email": email, "password": password, "first_name": "Tiering", "last_name": "Admin",
                     "site_name": "Customer tiering"},
            "prefs": {"site_name": "Customer tiering", "allow_tracking": False},
            "database": bi_database(env),
        })
        return "setup"
    session = call(base, "POST", "/api/session", {"username": email, "password": password})["id"]
    databases = call(base, "GET", "/api/database", session=session)
    databases = databases.get("data", []) if isinstance(databases, dict) else databases
    if any(d.get("name") == DATABASE_NAME for d in databases):
        return "present"
    call(base, "POST", "/api/database", bi_database(env), session=session)
    return "added"


if __name__ == "__main__":
    missing = [k for k in ("METABASE_ADMIN_EMAIL", "METABASE_ADMIN_PASSWORD", "TIERING_BI_READER_PASSWORD")
               if not os.environ.get(k)]
    if missing:
        sys.exit(f"set {', '.join(missing)} (see .env.example)")
    print(f"metabase set-up: {setup(dict(os.environ))}; BI connection '{DATABASE_NAME}'")
