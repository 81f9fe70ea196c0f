"""The change log through the pipeline's steps: months land and type only their own partitions,
a changed history is refused by a plain run and accepted by --restate, and a rerun reads the same
partition versions and gives the same rows. (The change log built month by month against a
from-scratch build: test_change_log_equals_full.py.)

Source, version 1 (line numbers; line 1 is the header):
  customers  2 K1 (2023)     3 K2 (created 2024-02-03)     4 K3 North (2023)
             5 K3's second version, South (updated 2023-06-01: the only row of June 2023)
             6-15 KF0..KF9 (2023: filler rows that keep version 2's drop under gate (a)'s
             same_month_row_count_drop)
  orders     2-21 OF0..OF19 K1 1.00 (January 6: filler rows that keep the quarantined share under
             gate (b)'s max_quarantined_share)
             22 O1 K1 100.00 (January 5)
             23 O2 K2 40.00 (January 15): unknown_customer in January, valid from February
             24/25 O3 K1 50.00 / 60.00 at one updated_at (January 20): conflicting_versions in every
             month; 26 its third version, 70.00 (updated February 10), counts from February
             27 O5 K1 30.00 (February 12)
             28 O7 K3 5.00 (January 8)
             29 OX updated '2024-01-32T10:00:00': in the partition 'unparseable', rejected every month
  invoices   2 I1 K1 100.00 (January 5)   3 I2 K1 30.00 (issued February 1)   4-13 F0..F9 1.00
  payments   2 P1 I1 100.00 (January 30)
             3 P2 I2 30.00 paid January 31: unknown_invoice in January, valid in February
             4 P3 I1 10.00 (January 20), 5 moved to F1 by its second version (February 5)
             6 P4 F2 5.00 recorded January 25 but paid February 15: after_month_end in January
             7-16 PF0..PF9 1.00 for F0..F9 (January 8)
Version 2 (before March): O1's January row corrected to 110.00, OX gone, a late order O6 K1 25.00
(January 28, line 29), P1 gone and K3's second version gone: January's partitions of orders and
payments and June 2023's of customers changed (the latter and 'unparseable' now hold no row).
January and February run on version 1; March refused, then restated; February refused (it was
computed from version 1 of January's partitions), restated, and rerun.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, order, write_source
from tests.fixtures.warehouse import query
from tiering.landing import SourceChangedError
from tiering.settings import landing_root

INVOICES = [
    {"invoice_id": "I1", "order_id": "O1", "customer_id": "K1", "issued_on": "2024-01-05", "due_on": "2024-02-04",
     "amount_due": "100.00", "currency": "EUR", "updated_at": "2024-01-05T00:00:00"},
    {"invoice_id": "I2", "order_id": "O5", "customer_id": "K1", "issued_on": "2024-02-01", "due_on": "2024-03-02",
     "amount_due": "30.00", "currency": "EUR", "updated_at": "2024-02-01T00:00:00"},
    *({"invoice_id": f"F{i}", "order_id": f"OF{i}", "customer_id": "K1", "issued_on": "2024-01-06",
       "due_on": "2024-02-05", "amount_due": "1.00", "currency": "EUR", "updated_at": "2024-01-06T00:00:00"}
      for i in range(10)),
]


def _payment(payment_id: str, invoice_id: str, paid_at: str, amount: str, updated_at: str | None = None) -> dict:
    return {"payment_id": payment_id, "invoice_id": invoice_id, "paid_at": paid_at, "amount": amount,
            "updated_at": updated_at or paid_at}


PAYMENTS = [
    _payment("P1", "I1", "2024-01-30T12:00:00", "100.00"),
    _payment("P2", "I2", "2024-01-31T12:00:00", "30.00"),
    _payment("P3", "I1", "2024-01-20T12:00:00", "10.00"),
    _payment("P3", "F1", "2024-01-20T12:00:00", "10.00", "2024-02-05T12:00:00"),
    _payment("P4", "F2", "2024-02-15T12:00:00", "5.00", "2024-01-25T12:00:00"),
    *(_payment(f"PF{i}", f"F{i}", "2024-01-08T12:00:00", "1.00") for i in range(10)),
]
K3_SOUTH = customer("K3", region="South", updated="2023-06-01T00:00:00")
CUSTOMERS = [customer("K1"), customer("K2", created="2024-02-03T00:00:00"), customer("K3"), K3_SOUTH,
             *(customer(f"KF{i}") for i in range(10))]


def _orders(version: int) -> list[dict]:
    rows = [
        *(order(f"OF{i}", "K1", "1.00", "2024-01-06T10:00:00") for i in range(20)),
        order("O1", "K1", "100.00" if version == 1 else "110.00", "2024-01-05T10:00:00"),
        order("O2", "K2", "40.00", "2024-01-15T10:00:00"),
        order("O3", "K1", "50.00", "2024-01-20T10:00:00"),
        order("O3", "K1", "60.00", "2024-01-20T10:00:00"),
        order("O3", "K1", "70.00", "2024-01-20T10:00:00", updated="2024-02-10T10:00:00"),
        order("O5", "K1", "30.00", "2024-02-12T10:00:00"),
        order("O7", "K3", "5.00", "2024-01-08T10:00:00"),
    ]
    if version == 1:
        return [*rows, order("OX", "K1", "1.00", "2024-01-08T10:00:00", updated="2024-01-32T10:00:00")]
    return [*rows, order("O6", "K1", "25.00", "2024-01-28T10:00:00")]


def _source(directory: Path, version: int) -> Path:
    return write_source(directory, customers=[c for c in CUSTOMERS if version == 1 or c is not K3_SOUTH],
                        orders=_orders(version),
                        invoices=INVOICES, payments=PAYMENTS if version == 1 else PAYMENTS[1:])


def _run(source: Path, warehouse: Path, month: str, restate: bool = False) -> dict:
    return run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse), "restate": restate})


def _manifest(warehouse: Path, run: dict) -> dict:
    return json.loads((landing_root(warehouse) / "_runs" / f"{run['run_id']}.json").read_text())


def _log(warehouse: Path) -> dict[str, bytes]:
    """The change log: every file under the landing root but the run manifests, with its bytes."""
    root = landing_root(warehouse)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_runs" not in p.parts}


def _marts(warehouse: Path) -> list[tuple]:
    return query(warehouse, "select * exclude (run_id) from marts.customer_tier_monthly order by all")


def _revenue(warehouse: Path) -> dict:
    return {(c, f"{m:%Y-%m}"): (float(r), n) for c, m, r, n in query(
        warehouse, "select customer_id, month, net_revenue, order_count from marts.customer_tier_monthly")}


def _regions(warehouse: Path) -> dict:
    """K3's region per month."""
    return {f"{m:%Y-%m}": r for m, r in query(
        warehouse, "select month, region from marts.customer_tier_monthly where customer_id = 'K3'")}


def _quarantined(warehouse: Path, run: dict) -> list[tuple]:
    return query(warehouse, "select source_table, source_line, rule from quarantine.rejected_rows where run_id = ? "
                            "order by all", [run["run_id"]])


def _paid(warehouse: Path) -> dict:
    return {i: float(p) for i, p in query(warehouse, """select invoice_id, paid_to_date from
            intermediate.int_invoices__settlement where invoice_id in ('I1', 'I2', 'F1', 'F2')""")}


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict:
    """Every run of the story above, with what the warehouse and the change log held after each."""
    root = tmp_path_factory.mktemp("change-log")
    source, warehouse = _source(root / "source", 1), root / "wh" / "tiering.duckdb"
    out = {"warehouse": warehouse, "runs": {}, "paid": {}, "quarantined": {}, "failed": {}}

    def run(name: str, month: str, restate: bool = False) -> None:
        out["runs"][name] = _run(source, warehouse, month, restate)
        out["paid"][name] = _paid(warehouse)   # (int_invoices__settlement: the last run's month)
        out["quarantined"][name] = _quarantined(warehouse, out["runs"][name])

    def refused(name: str, month: str) -> None:
        log, marts = _log(warehouse), _marts(warehouse)
        with pytest.raises(SourceChangedError) as failed:
            _run(source, warehouse, month)
        out["failed"][name] = {"message": str(failed.value), "log_unchanged": _log(warehouse) == log,
                               "marts_unchanged": _marts(warehouse) == marts}

    run("january", "2024-01")
    run("february", "2024-02")
    out["revenue_v1"], out["regions_v1"] = _revenue(warehouse), _regions(warehouse)
    _source(source, 2)
    refused("march", "2024-03")
    run("march restated", "2024-03", restate=True)
    refused("february again", "2024-02")
    run("february restated", "2024-02", restate=True)
    run("february rerun", "2024-02")
    out["revenue"], out["regions"] = _revenue(warehouse), _regions(warehouse)
    return out


def test_each_month_lands_and_reads_its_own_partitions(history):
    warehouse, runs = history["warehouse"], history["runs"]
    january, february = _manifest(warehouse, runs["january"]), _manifest(warehouse, runs["february"])
    assert {t: v["landed"] for t, v in january["tables"].items()} == {
        "customers": ["2023-01", "2023-06"], "orders": ["2024-01", "unparseable"], "invoices": ["2024-01"],
        "payments": ["2024-01"], "fx_rates": [], "tier_overrides": []}
    assert {t: v["landed"] for t, v in february["tables"].items()} == {
        "customers": ["2024-02"], "orders": ["2024-02"], "invoices": ["2024-02"], "payments": ["2024-02"],
        "fx_rates": [], "tier_overrides": []}
    # rows read: orders 26 in January (lines 2-25, 28 and 29), 28 in February; payments 14 (all but
    # P3's second version), then 15
    assert [january["tables"][t]["rows"] for t in ("customers", "orders", "invoices", "payments")] == [13, 26, 11, 14]
    assert [february["tables"][t]["rows"] for t in ("customers", "orders", "invoices", "payments")] == [14, 28, 12, 15]
    assert february["tables"]["orders"]["partitions"]["2024-01"] == january["tables"]["orders"]["partitions"]["2024-01"]
    # staging holds each partition's current version, typed once (January's: version 2 since, with O6;
    # 'unparseable': version 2, with no row)
    assert query(warehouse, "select landing_partition, count(*), count(distinct landing_file) "
                            "from staging.stg_landing__orders group by 1 order by 1") == [
        ("2024-01", 26, 1), ("2024-02", 2, 1)]
    assert query(warehouse, "select customer_id, region from staging.stg_landing__customers "
                            "where customer_id in ('K1', 'K2', 'K3') order by 1") == [
        ("K1", "North"), ("K2", "North"), ("K3", "North")]


def test_a_month_sees_its_rows_and_rejects_by_its_own_rules(history):
    revenue, quarantined = history["revenue_v1"], history["quarantined"]
    # January: the fillers and O1; O2's customer unknown, O3's two versions conflicting
    assert revenue[("K1", "2024-01")] == (20 + 100.0, 21)
    assert ("K2", "2024-01") not in revenue
    # February: O3's third version, O5, and O2 now that K2 is known
    assert revenue[("K1", "2024-02")] == (20 + 100.0 + 70.0 + 30.0, 23)
    assert revenue[("K2", "2024-02")] == (40.0, 1)
    assert revenue[("K3", "2024-01")] == revenue[("K3", "2024-02")] == (5.0, 1)
    assert history["regions_v1"] == {"2024-01": "South", "2024-02": "South"}   # K3's second version
    assert quarantined["january"] == [("orders", 23, "unknown_customer"), ("orders", 24, "conflicting_versions"),
                                      ("orders", 25, "conflicting_versions"), ("orders", 29, "bad_timestamp"),
                                      ("payments", 3, "unknown_invoice"), ("payments", 6, "after_month_end")]
    assert quarantined["february"] == [("orders", 24, "conflicting_versions"), ("orders", 25, "conflicting_versions"),
                                       ("orders", 29, "bad_timestamp")]
    # version 2: OX gone from 'unparseable' (its new version holds no row)
    for name in ("march restated", "february restated", "february rerun"):
        assert quarantined[name] == [("orders", 24, "conflicting_versions"), ("orders", 25, "conflicting_versions")]


def test_what_was_paid_per_invoice_follows_moved_and_late_payments(history):
    paid = history["paid"]
    # January: I1 P1 and P3; F2 its filler only (P4 is paid after January)
    assert paid["january"] == {"I1": 110.0, "F1": 1.0, "F2": 1.0}
    # February: P3 moved to F1, P4 paid, I2 known and paid by P2
    assert paid["february"] == {"I1": 100.0, "I2": 30.0, "F1": 11.0, "F2": 6.0}
    # version 2: P1 gone
    assert paid["march restated"] == paid["february restated"] == {"I1": 0.0, "I2": 30.0, "F1": 11.0, "F2": 6.0}


def test_a_changed_history_fails_a_plain_run_with_one_line_per_table_and_writes_nothing(history):
    failed = history["failed"]["march"]
    assert failed["message"] == (
        "the source's history up to 2024-03 differs from the change log ("
        "customers: 1 month(s) changed (2023-06): 1 row(s) gone, 0 row(s) new, 0 row(s) changed; "
        "orders: 1 month(s) changed (2024-01): 0 row(s) gone, 1 row(s) new, 1 row(s) changed; "
        "payments: 1 month(s) changed (2024-01): 1 row(s) gone, 0 row(s) new, 0 row(s) changed); "
        "rerun with --restate to land it as a new version")
    assert "\n" not in failed["message"]
    assert failed["log_unchanged"] and failed["marts_unchanged"]


def test_restate_lands_new_versions_and_keeps_the_old(history):
    warehouse, runs = history["warehouse"], history["runs"]
    march = _manifest(warehouse, runs["march restated"])
    assert march["restatement"] is True
    assert {t: v["landed"] for t, v in march["tables"].items() if v["landed"]} == {
        "customers": ["2023-06"], "orders": ["2024-01", "unparseable"], "payments": ["2024-01"]}
    catalog = json.loads((landing_root(warehouse) / "_catalog.json").read_text())
    for table in ("orders", "payments"):
        versions = catalog["tables"][table]["partitions"]["2024-01"]
        assert [(v["version"], v["landed_by"]) for v in versions] == [
            (1, runs["january"]["run_id"]), (2, runs["march restated"]["run_id"])]
        assert all((landing_root(warehouse) / v["file"]).exists() for v in versions)
    assert [v["rows"] for v in catalog["tables"]["orders"]["partitions"]["2024-01"]] == [25, 26]
    assert [v["rows"] for v in catalog["tables"]["orders"]["partitions"]["unparseable"]] == [1, 0]
    assert [v["rows"] for v in catalog["tables"]["customers"]["partitions"]["2023-06"]] == [1, 0]
    assert [v["rows"] for v in catalog["tables"]["payments"]["partitions"]["2024-01"]] == [14, 13]
    # March sees version 2: O1 at 110.00 and the late O6; K3's first version (June 2023 emptied)
    assert history["revenue"][("K1", "2024-03")] == (20 + 110.0 + 70.0 + 30.0 + 25.0, 24)
    assert history["regions"]["2024-03"] == "North"


def test_a_month_computed_from_an_old_version_is_refused_then_restated(history):
    warehouse, runs = history["warehouse"], history["runs"]
    failed = history["failed"]["february again"]
    assert failed["message"] == (
        f"2024-02 was computed by run {runs['february']['run_id']} from other versions of the change log "
        f"(customers 2023-06 v1 -> v2; orders 2024-01 v1 -> v2; payments 2024-01 v1 -> v2); rerun with --restate "
        f"to recompute it from the "
        f"current ones")
    assert failed["log_unchanged"] and failed["marts_unchanged"]
    # restated: February with O1 at 110.00 and O6; January, never restated, keeps its result
    assert history["revenue"][("K1", "2024-02")] == (20 + 110.0 + 70.0 + 30.0 + 25.0, 24)
    assert history["revenue"][("K1", "2024-01")] == (20 + 100.0, 21)
    assert history["regions"] == {"2024-01": "South", "2024-02": "North", "2024-03": "North"}
    diffs = query(warehouse, "select previous_run_id, previous_value, restated_value from audit.restatement_diffs "
                             "where run_id = ? and customer_id = 'K1' and column_name = 'net_revenue'",
                  [runs["february restated"]["run_id"]])
    assert [(p, float(a), float(b)) for p, a, b in diffs] == [(runs["february"]["run_id"], 220.0, 255.0)]


def test_a_plain_rerun_reads_the_same_versions_and_gives_the_same_rows(history):
    warehouse, runs = history["warehouse"], history["runs"]
    restated, rerun = (_manifest(warehouse, runs[n]) for n in ("february restated", "february rerun"))
    assert {t: v["partitions"] for t, v in rerun["tables"].items()} == \
        {t: v["partitions"] for t, v in restated["tables"].items()}
    assert {t: v["landed"] for t, v in rerun["tables"].items() if v["landed"]} == {}
    checksums = dict(query(warehouse, "select run_id, input_checksum from audit.runs where month = '2024-02-01' "
                                      "and status = 'success'"))
    assert checksums[runs["february rerun"]["run_id"]] == checksums[runs["february restated"]["run_id"]] != \
        checksums[runs["february"]["run_id"]]
    results = [query(warehouse, "select * exclude (run_id, recorded_at) from audit.customer_tier_results "
                                "where run_id = ? "
                                "order by all", [runs[n]["run_id"]]) for n in ("february restated", "february rerun")]
    assert results[0] == results[1] and results[0]
    assert history["quarantined"]["february rerun"] == history["quarantined"]["february restated"]
