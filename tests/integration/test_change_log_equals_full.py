"""Incremental equals full, for the change log: the small demo source run month by month (the
session's demo warehouse: each month lands and types only its own partitions) gives for its last
month what a fresh warehouse that runs only that month gives (every partition landed and typed
in one run), on the same unchanged source: the same marts rows, as-of rows, typed change log and
quarantine rows, and the same partitions with the same fingerprints."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DEMO_WAREHOUSE_MONTHS, run_steps
from tests.fixtures.warehouse import query
from tiering.settings import landing_root

# The tables of one month that a from-scratch build must reproduce row for row. customer_tier_monthly's
# movement and previous_final_tier, and the tables built from them (customer_tier_history,
# tier_migration_monthly, tier_alerts_monthly, crm_actions_monthly), read the previous month's
# result, which a warehouse that ran one month has not: they are left out.
SAME_MONTH = {
    "marts.customer_tier_monthly": ("movement", "previous_final_tier"),
    "marts.customer_credit_monthly": (),
    "marts.customer_potential_monthly": (),
    "marts.tier_summary_monthly": (),
    "marts.pareto_curve_monthly": (),
    "intermediate.int_customers__as_of": (),
    "intermediate.int_orders__as_of": (),
    "intermediate.int_invoices__as_of": (),
    "intermediate.int_payments__as_of": (),
    "intermediate.int_fx_rates__as_of": (),
    "intermediate.int_orders__in_reporting_currency": (),
    "intermediate.int_invoices__settlement": (),
}


def _month_results(warehouse: Path, month: str) -> dict:
    out = {}
    for table, left_out in SAME_MONTH.items():
        columns = [c for (c,) in query(warehouse, "select column_name from information_schema.columns "
                                                  "where table_schema = ? and table_name = ? order by ordinal_position",
                                       table.split(".")) if c not in (*left_out, "run_id")]
        where = f" where month = date '{month}-01'" if "month" in columns else ""
        out[table] = query(warehouse, f"select {', '.join(columns)} from {table}{where} order by all")
    run_id = query(warehouse, "select run_id from audit.runs where month = ? and status = 'success' "
                              "order by finished_at desc limit 1", [f"{month}-01"])[0][0]
    out["quarantine"] = query(warehouse, "select * exclude (run_id, quarantined_at) from quarantine.rejected_rows "
                                         "where run_id = ? order by all", [run_id])
    # the typed change log up to the month (landing_file names the warehouse's own landing folder)
    for table in ("customers", "orders", "invoices", "payments", "fx_rates"):
        out[f"staging.stg_landing__{table}"] = query(warehouse, f"""
            select * exclude (landing_file) from staging.stg_landing__{table}
            where landing_partition <= '{month}' or landing_partition = 'unparseable' order by all""")
    return out


def test_the_change_log_built_month_by_month_equals_a_from_scratch_build(demo_warehouse, demo_source,
                                                                          tmp_path_factory):
    last = DEMO_WAREHOUSE_MONTHS[-1]
    fresh = tmp_path_factory.mktemp("from-scratch") / "tiering.duckdb"
    run_steps({"month": last, "source_dir": str(demo_source), "warehouse": str(fresh)})
    month_by_month, from_scratch = _month_results(demo_warehouse, last), _month_results(fresh, last)
    for table, rows in month_by_month.items():
        assert rows, table
        assert rows == from_scratch[table], table
    # the same partitions with the same fingerprints, one version each: landed in four runs or in one
    month_by_month, from_scratch = ({t: {p: [(v["version"], v["rows"], v["hash"]) for v in versions]
                                         for p, versions in entry["partitions"].items()}
                                     for t, entry in json.loads((landing_root(w) / "_catalog.json").read_text())[
                                         "tables"].items()} for w in (demo_warehouse, fresh))
    assert month_by_month == from_scratch
    assert {len(versions) for partitions in from_scratch.values() for versions in partitions.values()} == {1}
