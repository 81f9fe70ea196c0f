"""Publishing the month's marts to PostgreSQL. Placeholder: not implemented yet."""
from __future__ import annotations

from tiering.runspec import RunSpec


def publish_month(spec: RunSpec) -> dict:
    return {"skipped": "publishing to PostgreSQL is not implemented yet"}
