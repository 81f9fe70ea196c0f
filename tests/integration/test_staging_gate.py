"""Gate (b), staging (expectations/staging.py), on a copy of the demo warehouse whose staging
tables are broken by hand: an order id held twice and an order of an unknown customer."""
from __future__ import annotations

import shutil

import duckdb
import pytest

from tiering.errors import QualityGateError
from tiering.quality import run_gate
from tiering.runspec import RunSpec


def test_the_staging_gate_finds_a_duplicate_id_and_an_unknown_customer(demo_warehouse, demo_source, tmp_path):
    warehouse = tmp_path / "tiering.duckdb"
    shutil.copy(demo_warehouse, warehouse)
    con = duckdb.connect(str(warehouse))
    try:
        month, run_id = con.execute("select month, run_id from audit.runs where status = 'success' "
                                    "order by month desc, finished_at desc limit 1").fetchone()
        duplicated = con.execute("select min(order_id) from staging.stg_raw__orders").fetchone()[0]
        con.execute("insert into staging.stg_raw__orders select * from staging.stg_raw__orders where order_id = ?",
                    [duplicated])
        con.execute("""insert into staging.stg_raw__orders
                       select * replace ('O-NEW' as order_id, 'C-NOBODY' as customer_id)
                       from staging.stg_raw__orders where order_id = ? limit 1""", [duplicated])
    finally:
        con.close()
    spec = RunSpec(month=month, run_id=run_id, source_dir=demo_source, warehouse=warehouse)
    with pytest.raises(QualityGateError) as failure:
        run_gate("staging", spec)
    message = str(failure.value)
    assert "staging.orders.unique_id" in message and duplicated in message
    assert "staging.orders.customer_id_in_customers" in message and "C-NOBODY" in message
