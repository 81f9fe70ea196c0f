"""Gate (b), staging (expectations/staging.py), on a copy of the demo warehouse whose staging
tables are broken by hand: order ids held twice and an order of an unknown customer. After a
staging build that updated the tables in place, the row checks read only the ids the run's own
rows touch, the rows it wrote with its staged_before (the rest passed the gate in the base run)."""
from __future__ import annotations

import shutil

import duckdb
import pytest

from tiering.errors import QualityGateError
from tiering.quality import run_gate
from tiering.runspec import RunSpec


@pytest.mark.parametrize("in_place", [False, True], ids=["rebuilt", "updated-in-place"])
def test_the_staging_gate_finds_a_duplicate_id_and_an_unknown_customer(demo_warehouse, demo_source, tmp_path,
                                                                       in_place):
    warehouse = tmp_path / "tiering.duckdb"
    shutil.copy(demo_warehouse, warehouse)
    con = duckdb.connect(str(warehouse))
    try:
        month, run_id = con.execute("select month, run_id from audit.runs where status = 'success' "
                                    "order by month desc, finished_at desc limit 1").fetchone()
        assert con.execute("select batch_id from audit.staging_state").fetchall() == [(run_id,)]
        con.execute("update audit.staging_state set updated_in_place = ?", [in_place])
        own_orders = """select order_id from raw.orders where _row_key in (select row_key from raw.batch_members
                        where batch_id = ? and source_table = 'orders')"""
        touched, other = con.execute(f"""
            select min(order_id) filter (where order_id in ({own_orders})),
                   min(order_id) filter (where order_id not in ({own_orders}))
            from staging.stg_raw__orders""", [run_id, run_id]).fetchone()
        if in_place:   # an update in place leaves the rows it did not touch with their earlier build's month
            con.execute(f"update staging.stg_raw__orders set staged_before = ? where order_id not in ({own_orders})",
                        [month, run_id])
        for duplicated in (touched, other):
            con.execute("insert into staging.stg_raw__orders select * from staging.stg_raw__orders where order_id = ?",
                        [duplicated])
        con.execute("update staging.stg_raw__orders set customer_id = 'C-NOBODY' where order_id = ?", [touched])
    finally:
        con.close()
    spec = RunSpec(month=month, run_id=run_id, source_dir=demo_source, warehouse=warehouse)
    with pytest.raises(QualityGateError) as failure:
        run_gate("staging", spec)
    message = str(failure.value)
    assert "staging.orders.unique_id" in message and touched in message
    assert "staging.orders.customer_id_in_customers" in message and "C-NOBODY" in message
    # an untouched id is checked when staging was rebuilt, not after an update in place
    assert (other in message) is not in_place
