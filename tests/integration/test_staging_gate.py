"""Gate (b), staging (expectations/staging.py), on a copy of the demo warehouse broken by hand: the
as-of rows (an order id held twice, an order of an unknown customer, an override of an unknown
customer, a version updated after the month end), and the typed change log (a partition's rows
missing from staging.stg_landing__orders: the month read rows that were never typed)."""
from __future__ import annotations

import shutil

import duckdb
import pytest

from tiering.errors import QualityGateError
from tiering.quality import run_gate
from tiering.runspec import RunSpec


@pytest.fixture
def broken(demo_warehouse, demo_source, tmp_path, monkeypatch):
    """(a writable copy of the demo warehouse, the spec of its latest successful run); the copy reads
    the demo's change log (its runs' manifests)."""
    warehouse = tmp_path / "tiering.duckdb"
    shutil.copy(demo_warehouse, warehouse)
    monkeypatch.setenv("TIERING_LANDING_DIR", str(demo_warehouse.parent / "landing"))
    con = duckdb.connect(str(warehouse))
    try:
        month, run_id = con.execute("select month, run_id from audit.runs where status = 'success' "
                                    "order by month desc, finished_at desc limit 1").fetchone()
    finally:
        con.close()
    return warehouse, RunSpec(month=month, run_id=run_id, source_dir=demo_source, warehouse=warehouse)


def test_the_staging_gate_passes_on_the_demo_month(broken):
    summary = run_gate("staging", broken[1])
    assert summary["failed_errors"] == 0 and summary["evaluated"] > 15


def test_the_staging_gate_finds_duplicate_ids_unknown_references_and_late_versions(broken):
    warehouse, spec = broken
    con = duckdb.connect(str(warehouse))
    try:
        first, second = (r[0] for r in con.execute(
            "select order_id from intermediate.int_orders__as_of order by order_id limit 2").fetchall())
        con.execute("insert into intermediate.int_orders__as_of select * from intermediate.int_orders__as_of "
                    "where order_id = ?", [first])
        con.execute("update intermediate.int_orders__as_of set customer_id = 'C-NOBODY' where order_id = ?", [second])
        con.execute("update intermediate.int_customers__as_of set updated_at = ? "
                    "where customer_id = (select min(customer_id) from intermediate.int_customers__as_of)",
                    [spec.next_month])
        con.execute("insert into intermediate.int_tier_overrides__as_of by name select 'OV-X' as override_id, "
                    "'C-GONE' as customer_id, 'A' as override_tier, ?::timestamp as updated_at", [spec.month])
    finally:
        con.close()
    with pytest.raises(QualityGateError) as failure:
        run_gate("staging", spec)
    message = str(failure.value)
    assert message.startswith(f"quality gate 'staging' failed for {spec.month_text}") and "\n" not in message
    assert "staging.orders.unique_id" in message and first in message
    assert "staging.orders.customer_id_in_customers" in message and "C-NOBODY" in message
    assert "staging.customers.updated_before_month_end" in message
    assert "staging.tier_overrides.customer_id_in_customers" in message and "C-GONE" in message
    assert "rows_accounted_for" not in message


def test_rows_read_that_were_never_typed_fail_the_staging_gate_naming_the_partition(broken):
    warehouse, spec = broken
    con = duckdb.connect(str(warehouse))
    try:
        typed = con.execute("delete from staging.stg_landing__orders where landing_partition = ? "
                            "and source_line % 2 = 0", [spec.month_text]).fetchone()[0]
        read, = con.execute("select rows from landing.partitions where table_name = 'orders' "
                            "and landing_partition = ?", [spec.month_text]).fetchone()
    finally:
        con.close()
    assert typed > 0
    with pytest.raises(QualityGateError) as failure:
        run_gate("staging", spec)
    message = str(failure.value)
    assert "staging.rows_read.rows_accounted_for: expect_column_values_to_be_null(column=unaccounted_partitions)" \
        in message
    assert f"orders {spec.month_text}: {read} read, {read - typed} typed" in message
