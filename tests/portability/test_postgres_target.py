"""The dbt project on PostgreSQL gives the same marts as on DuckDB (docs/portability.md).

The session's demo warehouse (4 months, built on DuckDB) is replayed on PostgreSQL by
`python -m tiering.targets` in a process of its own: its source tables are copied, dbt runs
every month with that month's vars (dbt build with every data and unit test for the last
month), and the marts are compared row by row. Needs PostgreSQL (127.0.0.1:5432 by default,
TIERING_PG_*); skipped with the reason when it is not reachable.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal

import pytest

from tiering import targets

pytestmark = pytest.mark.postgres


def replay(target: str, warehouse, python: str = sys.executable, *extra: str) -> dict:
    """Run `python -m tiering.targets` and return its JSON summary (the last stdout line)."""
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}
    env.pop("TIERING_DBT_TARGET", None)
    proc = subprocess.run([python, "-m", "tiering.targets", "--target", target, "--warehouse", str(warehouse),
                           "--test-last-month-only", *extra],
                          capture_output=True, text=True, timeout=900, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no summary from tiering.targets (exit {proc.returncode}): {proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def test_marts_on_postgres_equal_duckdb(demo_warehouse):
    reason = targets.pg_reachable()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("dbt.adapters.postgres", reason="dbt-postgres is in the optional `postgres` group "
                                                         "(make test installs it)")
    summary = replay("postgres", demo_warehouse)
    assert "error" not in summary, summary.get("error")
    assert summary["months"] == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert [b["command"] for b in summary["builds"]] == ["run", "run", "run", "build"]
    assert summary["copied_rows"]["raw.orders"] > 0
    for table, result in summary["marts"].items():
        assert result["differences"] == [], (table, result["differences"])
        assert result["rows"] == result["postgres_rows"] > 0, table
    # the demo warehouse holds 150 customers, not all known from the first month
    assert summary["marts"]["tier_summary_monthly"]["rows"] >= 4 * 3
    assert summary["identical"] is True


@pytest.mark.parametrize(("left", "right", "same"), [
    (Decimal("67.56"), Decimal("67.56"), True),
    (Decimal("67.56"), Decimal("67.55"), False),    # decimals are exact
    (3, Decimal("3.000"), True),
    (0.1 + 0.2, 0.3, True),                         # doubles within 1e-9 (relative above 1)
    (1e6, 1e6 + 0.01, False),
    (12, 12.0, True),                               # e.g. a month difference: integer vs double
    (None, None, True),
    (None, 0, False),
    (True, 1, False),
    (date(2024, 1, 1), date(2024, 1, 1), True),
    ("A", "B", False),
])
def test_value_comparison(left, right, same):
    assert targets._same(left, right) is same
