"""A warehouse built before months could be provisional (no is_provisional column) keeps working:
the next run adds the column (false: those months were final) and the marts build on."""
from __future__ import annotations

import duckdb

from tests.conftest import run_steps
from tests.fixtures.warehouse import query as _rows
from tiering.warehouse import PROVISIONAL_TABLES


def test_an_older_warehouse_gets_the_column(demo_source, tmp_path):
    warehouse = tmp_path / "tiering.duckdb"
    run_steps({"month": "2024-01", "source_dir": str(demo_source), "warehouse": str(warehouse)})
    con = duckdb.connect(str(warehouse))
    for table in PROVISIONAL_TABLES:  # as built before the column existed
        con.execute(f"alter table {table} drop column is_provisional")
    con.close()
    run_steps({"month": "2024-02", "source_dir": str(demo_source), "warehouse": str(warehouse)})
    for table in PROVISIONAL_TABLES:
        rows, flagged, provisional = _rows(warehouse, f"select count(*), count(is_provisional), "
                                                      f"bool_or(is_provisional) from {table}")[0]
        assert rows > 0 and flagged == rows and provisional is False, table
    months = _rows(warehouse, "select distinct month from marts.tier_summary_monthly order by month")
    assert [m for m, in months] == [r for r, in _rows(warehouse, "select month from audit.runs order by month")]
    assert len(months) == 2
