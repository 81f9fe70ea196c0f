"""Customer potential (expected future value). Placeholder: not implemented yet."""
from __future__ import annotations

from tiering.runspec import RunSpec


def score_month(spec: RunSpec, rules) -> dict:
    return {"skipped": "customer potential is not implemented yet"}
