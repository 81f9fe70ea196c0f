"""Incremental landing (tiering.increment): a month lands only what changed since an earlier run,
and every result equals the full landing's (TIERING_LANDING=full) on the same months.

Source, version 1 (January and February):
  customers  K1 (2023), K2 (arrives 2024-02-03)
  orders     O1 K1 100 (Jan)
             O2 K2 40 (Jan 15): unknown_customer in January, valid from February (carried)
             O3 K1 two versions at the same updated_at (Jan 20, 50 / 60): conflicting_versions in
                January; a third version (Feb 10, 70) makes them no longer the latest in February
             O5 K1 30 (Feb)
  invoices   I1 K1 (Jan), I2 K1 (issued Feb 1)
  (and 20 small orders, 10 invoices and 10 payments in January, so that the quarantined rows
  stay under the staging gate's max_quarantined_share)
  payments   P1 for I1 (Jan), P2 for I2 paid Jan 31: unknown_invoice in January, valid in February
             P3 for I1 (Jan 20), moved to F1 by a second version (Feb 5): both invoices' totals change
             P4 for F2, recorded Jan 25 but paid Feb 15: after_month_end in January (quarantined),
                carried and valid in February
Version 2 (March): O1's January row is corrected in place (110): the rows before February's
cutoff changed, so orders are landed in full; the other tables stay deltas. A plain rerun of
February then fails (its source differs from February's run: tiering.reproduce); February is
restated as of its end instead. The staging tables are updated in place in February (a delta on
the batch they hold), rebuilt in March and for the restatement of February; every result is
compared after every run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, order, write_source
from tests.fixtures.warehouse import query
from tiering.reproduce import SourceChangedError
from tiering.source import TABLES

INVOICES = [
    {"invoice_id": "I1", "order_id": "O1", "customer_id": "K1", "issued_on": "2024-01-05", "due_on": "2024-02-04",
     "amount_due": "100.00", "currency": "EUR", "updated_at": "2024-01-05T00:00:00"},
    {"invoice_id": "I2", "order_id": "O5", "customer_id": "K1", "issued_on": "2024-02-01", "due_on": "2024-03-02",
     "amount_due": "30.00", "currency": "EUR", "updated_at": "2024-02-01T00:00:00"},
]
PAYMENTS = [
    {"payment_id": "P1", "invoice_id": "I1", "paid_at": "2024-01-30T12:00:00", "amount": "100.00",
     "updated_at": "2024-01-30T12:00:00"},
    {"payment_id": "P2", "invoice_id": "I2", "paid_at": "2024-01-31T12:00:00", "amount": "30.00",
     "updated_at": "2024-01-31T12:00:00"},
    {"payment_id": "P3", "invoice_id": "I1", "paid_at": "2024-01-20T12:00:00", "amount": "10.00",
     "updated_at": "2024-01-20T12:00:00"},
    {"payment_id": "P3", "invoice_id": "F1", "paid_at": "2024-01-20T12:00:00", "amount": "10.00",
     "updated_at": "2024-02-05T12:00:00"},
    {"payment_id": "P4", "invoice_id": "F2", "paid_at": "2024-02-15T12:00:00", "amount": "5.00",
     "updated_at": "2024-01-25T12:00:00"},
]


# valid January rows, so that the quarantined ones stay under gate (b)'s max_quarantined_share
FILLER_INVOICES = [
    {"invoice_id": f"F{i}", "order_id": f"OF{i}", "customer_id": "K1", "issued_on": "2024-01-06",
     "due_on": "2024-02-05", "amount_due": "1.00", "currency": "EUR", "updated_at": "2024-01-06T00:00:00"}
    for i in range(10)]
FILLER_PAYMENTS = [
    {"payment_id": f"PF{i}", "invoice_id": f"F{i}", "paid_at": "2024-01-08T12:00:00", "amount": "1.00",
     "updated_at": "2024-01-08T12:00:00"} for i in range(10)]


def _orders(o1_amount: str = "100.00") -> list[dict]:
    return [
        *(order(f"OF{i}", "K1", "1.00", "2024-01-06T10:00:00") for i in range(20)),
        order("O1", "K1", o1_amount, "2024-01-05T10:00:00"),
        order("O2", "K2", "40.00", "2024-01-15T10:00:00"),
        order("O3", "K1", "50.00", "2024-01-20T10:00:00"),
        order("O3", "K1", "60.00", "2024-01-20T10:00:00"),
        order("O3", "K1", "70.00", "2024-01-20T10:00:00", updated="2024-02-10T10:00:00"),
        order("O5", "K1", "30.00", "2024-02-12T10:00:00"),
    ]


CUSTOMERS = [customer("K1"), customer("K2", created="2024-02-03T00:00:00")]


def _source(directory: Path, o1_amount: str = "100.00", orders: list[dict] | None = None,
            row_group_size: int | None = None, customers: list[dict] = CUSTOMERS) -> Path:
    """The source as CSV, or as Parquet in row groups of `row_group_size` rows (a delta then reads
    only the row groups that can hold its rows: tiering.landing)."""
    source = write_source(directory,
                          customers=customers,
                          orders=orders or _orders(o1_amount), invoices=INVOICES + FILLER_INVOICES,
                          payments=PAYMENTS + FILLER_PAYMENTS)
    if row_group_size:
        for csv in source.glob("*.csv"):
            table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in TABLES[csv.stem].columns}))
            pq.write_table(table, csv.with_suffix(".parquet"), row_group_size=row_group_size)
            csv.unlink()
    return source


COMPARED = {
    "marts.customer_tier_monthly": "customer_id, month, net_revenue, order_count, value_tier, credit_grade, "
                                   "final_tier, movement, previous_final_tier",
    "marts.customer_credit_monthly": "customer_id, month, invoice_count, on_time_rate, overdue_balance, credit_grade",
    "staging.stg_raw__orders": "order_id, customer_id, order_status, amount, updated_at",
    "staging.stg_raw__payments": "payment_id, invoice_id, amount",
    "staging.stg_raw__customers": "customer_id, region, first_seen_at, updated_at",
    "intermediate.int_orders__in_reporting_currency": "order_id, customer_id, order_status, amount_reporting",
    "intermediate.int_invoices__settlement": "invoice_id, amount_due, paid_to_date, settled_on",
}


def _results(warehouse: Path) -> dict:
    out = {table: query(warehouse, f"select {cols} from {table} order by all") for table, cols in COMPARED.items()}
    # the quarantine of every month's latest run: the same rows with the same reasons
    out["quarantine"] = query(warehouse, """
        select q.month, q.source_table, q.source_line, q.rule from quarantine.rejected_rows q
        where q.run_id in (select run_id from audit.runs where status = 'success'
                           qualify row_number() over (partition by month order by finished_at desc) = 1)
        order by all""")
    return out


def _manifest(warehouse: Path, run: dict) -> dict:
    return json.loads((warehouse.parent / "landing" / run["run_id"] / "_manifest.json").read_text())


def _run(source: Path, warehouse: Path, month: str, mode: str, restate_as_of: str | None = None) -> dict:
    previous = os.environ.get("TIERING_LANDING")
    os.environ["TIERING_LANDING"] = mode
    restate = {"restate": True, "as_of": restate_as_of} if restate_as_of else {}
    try:
        return run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse), **restate})
    finally:
        if previous is None:
            del os.environ["TIERING_LANDING"]
        else:
            os.environ["TIERING_LANDING"] = previous


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory) -> dict:
    """January, February (source v1), March (source v2), then February again, in both modes, from
    a Parquet source in row groups of 4 rows (CSV sources: the history and end-to-end tests)."""
    root = tmp_path_factory.mktemp("incremental")
    out = {}
    for mode in ("incremental", "full"):
        source, warehouse = root / mode / "source", root / mode / "wh" / "tiering.duckdb"
        runs, after_each = [], []
        for month, o1_amount in (("2024-01", "100.00"), ("2024-02", "100.00"), ("2024-03", "110.00")):
            _source(source, o1_amount=o1_amount, row_group_size=4)
            runs.append(_run(source, warehouse, month, mode))
            after_each.append(_results(warehouse))   # staging holds each run's batch
        # February again on the corrected source: a plain rerun must reproduce February's run (O1's
        # January row changed), so it fails; a restatement as of February's end accepts the change
        with pytest.raises(SourceChangedError, match=r"differs from its last successful run "
                                                     rf"{runs[1]['run_id']}: orders 0 rows gone, 1 changed; rerun"):
            _run(source, warehouse, "2024-02", mode)
        runs.append(_run(source, warehouse, "2024-02", mode, restate_as_of="2024-03-01T00:00:00"))
        after_each.append(_results(warehouse))
        out[mode] = {"warehouse": warehouse, "manifests": [_manifest(warehouse, r) for r in runs],
                     "results": after_each[-1], "after_each": after_each}
    return out


def test_every_result_equals_the_full_landing(both_modes):
    for step, (incremental, full) in enumerate(zip(both_modes["incremental"]["after_each"],
                                                   both_modes["full"]["after_each"], strict=True)):
        for table in incremental:
            assert incremental[table] == full[table], (step, table)
    incremental = both_modes["incremental"]["results"]
    tiers = {(c, str(m)): (rev, t) for c, m, rev, _, t, *_ in incremental["marts.customer_tier_monthly"]}
    # O2 (K2, carried from January's quarantine) and O3's newest version count from February on
    assert float(tiers[("K2", "2024-02-01")][0]) == 40.0
    # O1 was corrected to 110 in the source before March; February was then restated with it
    assert float(tiers[("K1", "2024-02-01")][0]) == 20 + 110.0 + 70.0 + 30.0
    assert float(tiers[("K1", "2024-03-01")][0]) == 20 + 110.0 + 70.0 + 30.0


def test_february_lands_only_the_changes_and_the_quarantined_rows(both_modes):
    january, february = both_modes["incremental"]["manifests"][:2]
    assert {t["landing"] for t in january["tables"].values()} == {"full"}
    orders = february["tables"]["orders"]
    assert (orders["landing"], orders["base_run_id"]) == ("delta", january["run_id"])
    # O2 and both O3 rows quarantined in January, O3's new version and O5
    assert (orders["carried_rows"], orders["rows"], orders["snapshot_rows"]) == (3, 5, 26)
    payments = february["tables"]["payments"]
    # P2 and P4 (carried) and P3's second version
    assert (payments["landing"], payments["carried_rows"], payments["rows"]) == ("delta", 2, 3)
    assert february["tables"]["customers"]["landing"] == "delta"
    # the row groups read: of the orders' 7 (4 rows each), the last (O3's new version, O5); the
    # customers' only one (K2 created in February); of the payments' 4, the first (P3's new
    # version). The carried rows (O2 and O3's in the 6th, P2) come from January's quarantine
    # records, the file being byte for byte January's
    assert [february["tables"][t]["row_groups_read"] for t in ("orders", "customers", "payments")] == [1, 1, 1]
    assert orders["carried_rows_from"] == f"quarantine.rejected_rows of run {january['run_id']}"
    assert len(february["tables"]["payments"]["row_group_times"]) == 4
    assert len(orders["row_group_times"]) == 7
    # January landed the tables in full and kept their row groups' times; February took them
    # from there (the same file) instead of reading the updated_at columns again
    assert {t: january["tables"][t]["row_group_times"] for t in ("orders", "payments")} == \
        {t: february["tables"][t]["row_group_times"] for t in ("orders", "payments")}
    # in full mode the same month lands every row
    full_february = both_modes["full"]["manifests"][1]["tables"]["orders"]
    assert (full_february["landing"], full_february["rows"]) == ("full", 26)


def test_an_unchanged_source_file_is_not_scanned_for_its_fingerprint(both_modes):
    """February's source files are January's, byte for byte: their fingerprints come from
    January's and the rows landed, and equal those a scan computes (full mode scans every file).
    March's orders changed: scanned, which finds the change."""
    incremental, full = both_modes["incremental"]["manifests"], both_modes["full"]["manifests"]
    for name, table in incremental[1]["tables"].items():
        assert table["source_sha256"] == incremental[0]["tables"][name]["source_sha256"]
        if name != "fx_rates":   # not versioned: always landed in full, and scanned
            assert table["fingerprint_from"] == "base run and landed rows", name
        assert (table["fingerprint"], table["snapshot_rows"]) == (
            full[1]["tables"][name]["fingerprint"], full[1]["tables"][name]["snapshot_rows"]), name
    assert "fingerprint_from" not in incremental[2]["tables"]["orders"]
    assert "fingerprint_from" not in full[1]["tables"]["orders"]


def test_a_changed_history_is_landed_in_full_with_the_reason(both_modes):
    march = both_modes["incremental"]["manifests"][2]["tables"]
    assert march["orders"]["landing"] == "full"
    assert "changed since run" in march["orders"]["full_reason"]
    assert march["customers"]["landing"] == march["payments"]["landing"] == "delta"
    # February restated after March: a restatement lands every table in full
    again = both_modes["incremental"]["manifests"][3]["tables"]
    assert {t["landing"] for t in again.values()} == {"full"}


def test_staging_is_updated_in_place_only_on_the_batch_it_holds(both_modes):
    manifests = both_modes["incremental"]["manifests"]
    # February is a delta on January in every table: staging (holding January) is updated in place;
    # March's orders were landed in full, and February's restatement all tables: staging is rebuilt
    assert [m["delta_on"] for m in manifests] == [None, manifests[0]["run_id"], None, None]
    held = query(both_modes["incremental"]["warehouse"], "select batch_id from audit.staging_state")
    assert held == [(manifests[3]["run_id"],)]
    # after February, staging holds the latest version of every order (O3: its third version)
    orders = both_modes["incremental"]["after_each"][1]["staging.stg_raw__orders"]
    assert [(o, float(a)) for o, _, _, a, _ in orders if not o.startswith("OF")] == [
        ("O1", 100.0), ("O2", 40.0), ("O3", 70.0), ("O5", 30.0)]


def test_what_was_paid_per_invoice_follows_moved_and_late_payments(both_modes):
    """int_invoices__settlement, updated in place in February, recomputes the invoices a moved
    payment left and joined (I1, F1) and the one a payment recorded in January but paid in
    February counts for (F2)."""
    after_each = both_modes["incremental"]["after_each"]

    def paid(step: int) -> dict:
        return {invoice: float(paid)
                for invoice, _, paid, _ in after_each[step]["intermediate.int_invoices__settlement"]
                if invoice in ("I1", "F1", "F2")}

    assert paid(0) == {"I1": 110.0, "F1": 1.0, "F2": 1.0}
    assert paid(1) == {"I1": 100.0, "F1": 11.0, "F2": 6.0}


def test_the_audit_counts_the_snapshot_and_names_the_base(both_modes):
    warehouse = both_modes["incremental"]["warehouse"]
    february = both_modes["incremental"]["manifests"][1]
    rows = query(warehouse, """select extracted_rows, loaded_rows, quarantined_rows, snapshot_rows, base_run_id
                               from audit.load_batches where run_id = ? and source_table = 'orders'""",
                 [february["run_id"]])
    assert rows == [(5, 5, 0, 26, february["base_run_id"])]
    lineage = query(warehouse, "select member_batch_id from raw.batch_lineage where batch_id = ? "
                               "and source_table = 'orders' order by 1", [february["run_id"]])
    assert sorted(r[0] for r in lineage) == sorted([february["run_id"], february["base_run_id"]])


def test_a_quarantined_row_beside_a_loaded_version_lands_the_table_in_full(tmp_path, monkeypatch):
    """O6 has two rows at the same updated_at: one valid, one in an unknown currency (quarantined).
    A delta could not let the conflicting-versions rule see both, so orders are landed in full.
    January's load counted the clash (audit.load_batches.quarantined_clashes), so February's
    landing reads the count, not the source's ids (carried_collisions is not called)."""
    orders = _orders() + [order("O6", "K1", "10.00", "2024-01-25T10:00:00"),
                          order("O6", "K1", "12.00", "2024-01-25T10:00:00", currency="GBP")]
    results = {}

    def no_scan(*args, **kwargs):
        raise AssertionError("the base run counted its clashes: the source must not be scanned for them")

    for mode in ("incremental", "full"):
        source, warehouse = tmp_path / mode / "source", tmp_path / mode / "wh" / "tiering.duckdb"
        _source(source, orders=orders)
        january = _run(source, warehouse, "2024-01", mode)
        with monkeypatch.context() as patched:
            patched.setattr("tiering.landing.carried_collisions", no_scan)
            february = _manifest(warehouse, _run(source, warehouse, "2024-02", mode))
        results[mode] = _results(warehouse)
        if mode == "incremental":
            assert query(warehouse, "select source_table, quarantined_clashes from audit.load_batches "
                                    "where run_id = ? order by 1", [january["run_id"]]) == \
                [("customers", 0), ("invoices", 0), ("orders", 1), ("payments", 0)]
            assert february["tables"]["orders"]["landing"] == "full"
            assert "shares its id and updated_at" in february["tables"]["orders"]["full_reason"]
            assert february["tables"]["payments"]["landing"] == "delta"
    assert results["incremental"] == results["full"]


def test_a_base_loaded_without_the_clash_count_has_its_source_scanned(tmp_path):
    """A base run loaded by code that kept no clash count (quarantined_clashes NULL) still gets
    the collision check, by a scan of the source's ids (tiering.source.carried_collisions)."""
    orders = _orders() + [order("O6", "K1", "10.00", "2024-01-25T10:00:00"),
                          order("O6", "K1", "12.00", "2024-01-25T10:00:00", currency="GBP")]
    source, warehouse = tmp_path / "source", tmp_path / "wh" / "tiering.duckdb"
    _source(source, orders=orders)
    _run(source, warehouse, "2024-01", "incremental")
    with duckdb.connect(str(warehouse)) as con:
        con.execute("update audit.load_batches set quarantined_clashes = null")
    february = _manifest(warehouse, _run(source, warehouse, "2024-02", "incremental"))
    assert february["tables"]["orders"]["landing"] == "full"
    assert "shares its id and updated_at" in february["tables"]["orders"]["full_reason"]


def test_a_carried_row_is_compared_with_the_version_staging_holds(tmp_path):
    """Carried rows (quarantined in January, valid in February) are older than February's delta,
    so staging's update in place looks up the version it holds of their ids
    (macros/staging.sql: union_held_versions): O7's carried row is older than the held one and must
    not replace it; O8's is newer and does. A customer's new version keeps the first version's
    first_seen_at (customer codes are numbered by it)."""
    customers = [*CUSTOMERS, customer("K1", region="South", updated="2024-02-05T00:00:00")]
    orders = _orders() + [order("O7", "K1", "25.00", "2024-01-08T10:00:00", updated="2024-01-12T10:00:00"),
                          order("O7", "K2", "35.00", "2024-01-08T10:00:00", updated="2024-01-10T10:00:00"),
                          order("O8", "K1", "15.00", "2024-01-08T10:00:00", updated="2024-01-11T10:00:00"),
                          order("O8", "K2", "16.00", "2024-01-08T10:00:00", updated="2024-01-14T10:00:00")]
    source, warehouse = tmp_path / "source", tmp_path / "wh" / "tiering.duckdb"
    _source(source, orders=orders, customers=customers)
    _run(source, warehouse, "2024-01", "incremental")
    february = _run(source, warehouse, "2024-02", "incremental")   # (its dbt tests check the customer codes)
    assert _manifest(warehouse, february)["tables"]["orders"]["carried_rows"] == 5
    assert query(warehouse, "select updated_in_place from audit.staging_state") == [(True,)]
    assert query(warehouse, "select order_id, customer_id, amount from staging.stg_raw__orders "
                            "where order_id in ('O7', 'O8') order by 1") == [("O7", "K1", 25), ("O8", "K2", 16)]
    assert query(warehouse, "select region, cast(first_seen_at as varchar) from staging.stg_raw__customers "
                            "where customer_id = 'K1'") == [("South", "2023-01-01 00:00:00")]


def test_rows_already_in_raw_are_found_by_key_when_staging_is_updated_in_place(tmp_path):
    """January, March, January again, then February: February's base is the January rerun, whose
    batch staging holds, so staging is updated in place; but February's rows were loaded into raw
    by March's run, so its own rows are found through raw.batch_rows, not as the rows it added."""
    results = {}
    for mode in ("incremental", "full"):
        source, warehouse = tmp_path / mode / "source", tmp_path / mode / "wh" / "tiering.duckdb"
        _source(source)
        runs = [_run(source, warehouse, month, mode) for month in ("2024-01", "2024-03", "2024-01", "2024-02")]
        results[mode] = _results(warehouse)
        if mode == "incremental":
            february = _manifest(warehouse, runs[-1])
            assert february["delta_on"] == runs[2]["run_id"]
            assert query(warehouse, "select batch_id, updated_in_place from audit.staging_state") == [
                (runs[-1]["run_id"], True)]
            not_new = query(warehouse, "select source_table from audit.load_batches where run_id = ? "
                                       "and loaded_rows > new_raw_rows order by 1", [runs[-1]["run_id"]])
            assert ("orders",) in not_new
    assert results["incremental"] == results["full"]


def test_rows_all_new_to_raw_are_the_rows_the_run_added_not_listed_by_key(tmp_path):
    """A run whose loaded rows of a table were all new to raw lists none of their keys in
    raw.batch_rows: they are the raw rows it added (_first_batch_id), and its lineage row says so.
    A reload of the same run finds them in raw already and lists them. raw.batch_members holds the
    run's own rows either way, and the next month (a delta on it) still sees its batch."""
    from tiering.pipeline import load_raw

    source, warehouse = tmp_path / "source", tmp_path / "wh" / "tiering.duckdb"
    _source(source)
    january = _run(source, warehouse, "2024-01", "incremental")
    loaded = dict(query(warehouse, "select source_table, loaded_rows from audit.load_batches where run_id = ? "
                                   "and loaded_rows = new_raw_rows", [january["run_id"]]))
    assert loaded["orders"] > 0 and loaded["customers"] > 0

    def listed() -> int:
        return query(warehouse, "select count(*) from raw.batch_rows where batch_id = ?", [january["run_id"]])[0][0]

    def members() -> dict:
        return dict(query(warehouse, "select source_table, count(*) from raw.batch_members where batch_id = ? "
                                     "group by 1", [january["run_id"]]))

    def flags() -> set:
        return {r[0] for r in query(warehouse, "select member_rows_added from raw.batch_lineage where batch_id = ?",
                                    [january["run_id"]])}

    assert listed() == 0 and flags() == {True}
    assert {t: n for t, n in members().items() if t in loaded} == {t: n for t, n in loaded.items() if n}
    load_raw(january)   # the same run loaded again: its rows are in raw already
    assert listed() == sum(loaded.values()) and flags() == {False}
    assert {t: n for t, n in members().items() if t in loaded} == {t: n for t, n in loaded.items() if n}
    february = _run(source, warehouse, "2024-02", "incremental")
    assert _manifest(warehouse, february)["delta_on"] == january["run_id"]


def test_tests_of_a_model_updated_in_place_check_the_rows_the_build_wrote(tmp_path):
    """The tests of the models kept with staging read, after an update in place, only the rows the
    build may have written (where: __rows_updated_in_place__, macros/staging.sql): a duplicate
    among them fails the test; a row the table held passed its own build's tests, so an old
    duplicate is only seen by a full check."""
    import shutil

    from tiering.dbt_runner import run_dbt
    from tiering.errors import DbtError
    from tiering.rules import load_rules
    from tiering.runspec import RunSpec
    from tiering.warehouse import connect

    source, warehouse = tmp_path / "source", tmp_path / "wh" / "tiering.duckdb"
    _source(source)
    _run(source, warehouse, "2024-01", "incremental")
    february = _run(source, warehouse, "2024-02", "incremental")
    assert query(warehouse, "select updated_in_place from audit.staging_state") == [(True,)]
    spec = RunSpec.from_conf(february)
    rules = load_rules(spec.rules_path)
    in_place = {"staging_increment": True, "own_rows_new": []}
    tests = ("unique_int_orders__in_reporting_currency_order_id", "unique_int_invoices__settlement_invoice_id")

    def check(extra_vars: dict) -> None:
        run_dbt("test", spec, rules, "--select", *tests, extra_vars=extra_vars)

    check(in_place)
    pristine = tmp_path / "pristine.duckdb"
    shutil.copy(warehouse, pristine)
    # O5 (February's own row) and I2 (paid in February: computed again) twice: both tests fail
    con = connect(warehouse)
    con.execute("insert into intermediate.int_orders__in_reporting_currency "
                "select * from intermediate.int_orders__in_reporting_currency where order_id = 'O5'")
    con.execute("insert into intermediate.int_invoices__settlement "
                "select * from intermediate.int_invoices__settlement where invoice_id = 'I2'")
    con.close()
    with pytest.raises(DbtError) as failed:
        check(in_place)
    assert "unique_int_orders__in_reporting_currency_order_id: fail" in str(failed.value)
    assert "unique_int_invoices__settlement_invoice_id: fail" in str(failed.value)
    # an order no February row touches (OF1), twice: outside the rows checked in place; a full check sees it
    shutil.copy(pristine, warehouse)
    con = connect(warehouse)
    con.execute("insert into intermediate.int_orders__in_reporting_currency "
                "select * from intermediate.int_orders__in_reporting_currency where order_id = 'OF1'")
    con.close()
    check(in_place)
    with pytest.raises(DbtError, match="unique_int_orders__in_reporting_currency_order_id: fail"):
        check({"staging_increment": False})
    # the relationships test of the orders runs in the marts build, which gets the vars staging was
    # built with: an unknown customer on an order of February is caught, on an older order only by a
    # full check (checked when that order was written)
    from tiering.pipeline import _staging_vars_of_run

    held = _staging_vars_of_run(spec)
    assert held["staging_increment"] is True and isinstance(held["own_rows_new"], list)
    assert _staging_vars_of_run(RunSpec(month=spec.month, run_id="another-run", source_dir=source,
                                        warehouse=warehouse)) == {}
    relationships = ("int_orders__in_reporting_currency,test_name:relationships",)

    def check_relationships(extra_vars: dict) -> None:
        run_dbt("test", spec, rules, "--select", *relationships, extra_vars=extra_vars)

    for order_id, caught_in_place in (("O5", True), ("OF1", False)):
        shutil.copy(pristine, warehouse)
        con = connect(warehouse)
        con.execute("update intermediate.int_orders__in_reporting_currency set customer_id = 'NOBODY' "
                    "where order_id = ?", [order_id])
        con.close()
        if caught_in_place:
            with pytest.raises(DbtError, match="relationships_int_orders__in_reporting_currency.*: fail"):
                check_relationships(in_place)
        else:
            check_relationships(in_place)
        with pytest.raises(DbtError, match="relationships_int_orders__in_reporting_currency.*: fail"):
            check_relationships({"staging_increment": False})
