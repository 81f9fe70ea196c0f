"""The real Airflow DAG (dag.test) on a small generated source: two months in order, a rerun,
out-of-order months, and the row-count reconciliation. All months run in this one process."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tests.fixtures.warehouse import query as _rows
from tiering.airflow_runner import run_month
from tiering.runspec import RunSpec, new_run_id

pytestmark = pytest.mark.e2e

MONTHS = [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]
COMPARED = """select * exclude (run_id) from marts.customer_tier_monthly order by customer_id, month"""


def _run(source: Path, warehouse: Path, month: date) -> RunSpec:
    spec = RunSpec(month=month, run_id=new_run_id(month), source_dir=source, warehouse=warehouse)
    summary = run_month(spec)
    assert summary["tiers"], f"no tiers for {month}"
    return spec


@pytest.fixture(scope="module")
def in_order(demo_source, tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("in-order") / "tiering.duckdb"
    specs = [_run(demo_source, warehouse, m) for m in MONTHS]
    return warehouse, specs


def test_two_months_through_the_dag(in_order):
    warehouse, specs = in_order
    runs = _rows(warehouse, "select month, status, rule_version from audit.runs order by month")
    assert [(r[0], r[1]) for r in runs] == [(m, "success") for m in MONTHS]
    per_month = _rows(warehouse, """select month, count(*), count(distinct customer_id), count(distinct run_id)
                                    from marts.customer_tier_monthly group by month order by month""")
    for _month, rows, customers, run_ids in per_month:
        assert rows == customers and run_ids == 1
    # every row says which rules and which run made it
    assert _rows(warehouse, "select count(*) from marts.customer_tier_monthly where rule_version is null "
                            "or run_id is null")[0][0] == 0
    tiers = _rows(warehouse, "select distinct value_tier from marts.customer_tier_monthly order by 1")
    assert [t[0] for t in tiers] == ["A", "B", "C"]
    assert Path(warehouse.parent / "published" / "tiering_bi.duckdb").exists()


# the relation holding a table's rows as the last month run checked them (rejection_rule NULL: valid)
CHECKED = {"customers": "staging.stg_landing__customers", "fx_rates": "staging.stg_landing__fx_rates",
           "orders": "intermediate.int_orders__checked", "invoices": "intermediate.int_invoices__checked",
           "payments": "intermediate.int_payments__checked",
           "tier_overrides": "intermediate.int_tier_overrides__checked"}
IN_REACH = "(landing_partition <= ? or landing_partition = 'unparseable')"


def _manifest(spec: RunSpec) -> dict:
    """The run's landing manifest, its files absolute (as the landing views' landing_file)."""
    from tiering.landing import load_manifest

    return load_manifest(spec.landing_manifest)


def test_valid_plus_quarantined_equals_landed(in_order):
    """Nothing lost: each run read the partitions its manifest names (their rows as counted at
    landing, all typed by staging); every row it quarantined is one of them; and for the month run
    last (whose month the checked views hold) valid + quarantined = read, per table."""
    warehouse, specs = in_order
    for spec in specs:
        manifest = _manifest(spec)
        assert manifest["run_id"] == spec.run_id and manifest["month"] == f"{spec.month:%Y-%m}"
        for table, meta in manifest["tables"].items():
            files = [p["file"] for p in meta["partitions"].values()]
            assert all(p <= f"{spec.month:%Y-%m}" or p == "unparseable" for p in meta["partitions"])
            landed = _rows(warehouse, "select count(*) from read_parquet(?)", [files])[0][0] if files else 0
            typed = _rows(warehouse, f"select count(*) from staging.stg_landing__{table} "
                                     f"where list_contains(?, landing_file)", [files])[0][0]
            assert landed == meta["rows"] == typed, (spec.month, table)
            # every quarantined row is a row the run read
            quarantined = "select landing_partition, source_line from quarantine.rejected_rows " \
                          "where run_id = ? and source_table = ?"
            strays = _rows(warehouse, f"select count(*) from ({quarantined} except "
                                      f"select landing_partition, _source_line from read_parquet(?))",
                           [spec.run_id, table, files])[0][0] if files else \
                len(_rows(warehouse, quarantined, [spec.run_id, table]))
            assert strays == 0, (spec.month, table)
    last = specs[-1]
    month = f"{last.month:%Y-%m}"
    for table, meta in _manifest(last)["tables"].items():
        valid = _rows(warehouse, f"select count(*) from {CHECKED[table]} where {IN_REACH} and rejection_rule is null",
                      [month])[0][0]
        quarantined = _rows(warehouse, "select count(*) from quarantine.rejected_rows where run_id = ? "
                                       "and source_table = ?", [last.run_id, table])[0][0]
        assert valid + quarantined == meta["rows"], table
    assert _rows(warehouse, "select count(*) from quarantine.rejected_rows where run_id = ?", [last.run_id])[0][0] > 0


def test_rerun_of_a_month_is_identical_but_for_run_id(in_order, demo_source):
    from tiering.pipeline import input_checksum
    from tiering.settings import landing_root

    warehouse, specs = in_order
    before = _rows(warehouse, COMPARED)
    files_before = sorted(landing_root(warehouse).rglob("v*.parquet"))
    rerun = _run(demo_source, warehouse, MONTHS[1])
    assert _rows(warehouse, COMPARED) == before
    # the rerun landed nothing (the change log holds every row once) and read the first run's partitions
    assert sorted(landing_root(warehouse).rglob("v*.parquet")) == files_before
    first, again = _manifest(specs[1]), _manifest(rerun)
    assert not any(t["landed"] for t in again["tables"].values())
    assert input_checksum(again) == input_checksum(first)
    assert _rows(warehouse, "select count(distinct input_checksum) from audit.runs where month = ?",
                 [MONTHS[1]]) == [(1,)]
    assert _rows(warehouse, "select distinct run_id from marts.customer_tier_monthly where month = ?",
                 [MONTHS[1]]) == [(rerun.run_id,)]
    # the audit keeps both runs of the month, each with its own manifest
    assert _rows(warehouse, "select count(distinct run_id) from audit.customer_tier_results where month = ?",
                 [MONTHS[1]])[0][0] == 2
    assert rerun.landing_manifest != specs[1].landing_manifest and specs[1].landing_manifest.exists()


def test_months_out_of_order_give_the_same_result(in_order, demo_source, tmp_path_factory):
    warehouse, _ = in_order
    shuffled = tmp_path_factory.mktemp("out-of-order") / "tiering.duckdb"
    for month in (MONTHS[2], MONTHS[0], MONTHS[1]):
        _run(demo_source, shuffled, month)
    assert _rows(shuffled, COMPARED) == _rows(warehouse, COMPARED)
    history = "select * from marts.customer_tier_history order by customer_id, valid_from"
    assert _rows(shuffled, history) == _rows(warehouse, history)
    credit = "select * exclude (run_id) from marts.customer_credit_monthly order by customer_id, month"
    assert _rows(shuffled, credit) == _rows(warehouse, credit)
    # the review clock counts from the start of the tier interval, which a month run later can move,
    # and the CRM actions read it, the movement and the previous tier of their month
    reviews = "select * from intermediate.int_customer_review_schedule order by customer_id, month"
    assert _rows(shuffled, reviews) == _rows(warehouse, reviews)
    actions = "select * exclude (run_id) from marts.crm_actions_monthly order by all"
    assert _rows(shuffled, actions) == _rows(warehouse, actions)


def test_customer_codes_are_valid_unique_and_keep_their_sequence(in_order):
    from tiering.codes import validate_code

    warehouse, _ = in_order
    rows = _rows(warehouse, "select customer_id, month, customer_code from marts.customer_tier_monthly")
    assert rows and all(validate_code(code) for _, _, code in rows)
    for month in MONTHS:
        codes = [code for _, m, code in rows if m == month]
        assert len(codes) == len(set(codes)), f"duplicate customer codes in {month}"
    # the sequence part (4th field) is the customer's for ever, whatever its tier does
    sequences: dict[str, set[str]] = {}
    for customer_id, _, code in rows:
        sequences.setdefault(customer_id, set()).add(code.split("-")[3])
    assert all(len(s) == 1 for s in sequences.values())
    assert len({next(iter(s)) for s in sequences.values()}) == len(sequences)


def test_the_execution_api_is_started_once_per_process(in_order):
    """run_month starts Airflow's in-process Execution API before its first dag.test() (a one-off
    of the process, timed apart by the bench); dag.test() then uses that same instance."""
    import time

    from airflow.sdk.execution_time.supervisor import in_process_api_server

    from tiering import airflow_runner

    assert airflow_runner._EXECUTION_API_READY
    api = in_process_api_server()
    started = time.monotonic()
    airflow_runner.start_execution_api()
    assert time.monotonic() - started < 0.5
    assert in_process_api_server() is api
