"""A hand-made source full of edge cases, with a restatement, on PostgreSQL equals DuckDB.

The row rules' edges (timestamps with offsets, a local time that is the next month in UTC,
special and impossible values, numbers in exponent form or too large, conflicting versions,
personal data in an override's reason, unknown values, currencies and customers) and a
restated partition: January and February run on DuckDB, then the January orders are changed and
February runs again with --restate (it reads version 2 of orders/2024-01; January's run read
version 1). `tiering.targets` then runs January (v1) and February (v2, which replaces v1's rows in
landing.orders and in staging) on PostgreSQL; the marts and the quarantined rows (their records of
the landed text too) equal DuckDB's.

About a minute and a half (three DuckDB months and two PostgreSQL months): `make test-postgres`
runs it (TIERING_TEST_POSTGRES_ALL=1); `make test` runs the faster demo comparison only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fixtures.sources import customer, order, write_source
from tests.portability.test_postgres_target import assert_same_as_duckdb, run_on_target
from tiering import pipeline, targets
from tiering.steps import STEPS
from tiering.warehouse import connect

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(os.environ.get("TIERING_TEST_POSTGRES_ALL") != "1",
                       reason="three DuckDB months and two on PostgreSQL: run `make test-postgres`"),
]

CUSTOMERS = [
    customer("C1", created="2023-01-01T00:00:00", updated="2024-01-02T00:00:00"),
    customer("C2", region="South", created="2023-02-01T00:00:00", updated="2024-01-03T10:00:00+02:00"),
    customer("C3", created="2023-03-01T00:00:00", updated="2024-01-04T00:00:00Z"),
    customer("C3", region="East", created="2023-03-01T00:00:00", updated="2024-02-04T00:00:00"),   # a new version
    customer("C4", kind="individual", created="2023-04-01", updated="2024-01-05 08:00:00"),
    customer("C5", kind="robot", created="2023-05-01T00:00:00", updated="2024-01-06T00:00:00"),     # unknown_value
    customer("C6", created="infinity", updated="2024-01-07T00:00:00"),                              # impossible
    customer("C7", created="2023-07-01T00:00:00", updated="yesterday"),                             # unparseable
    customer("C8", created="1850-01-01T00:00:00", updated="2024-01-08T00:00:00"),                   # before 1900
    customer("C9", created="2023-09-01T00:00:00", updated="2024-02-09T00:00:00"),                   # new in February
    customer("C10", created="12023-01-01T00:00:00", updated="2024-01-09T00:00:00"),                 # after 9999
]
ORDERS = [
    order("O1", "C1", "100.00", "2024-01-10T10:00:00"),
    order("O2", "C1", "1e2", "2024-01-11T10:00:00+05:30"),
    order("O3", "C2", " 250.5 ", "2024-01-12 09:00:00"),
    order("O4", "C2", "75.25", "2024-01-31T23:30:00-01:00"),          # 2024-02-01 00:30 UTC: February's
    order("O5", "C3", "60", "2024-01-13", currency="USD"),
    order("O6", "C3", "40", "2024-01-14T10:00:00", currency="GBP"),   # no rate: unknown_currency
    order("O7", "C4", "-10", "2024-01-15T10:00:00", status="credit_note"),
    order("O8", "C4", "-10", "2024-01-15T10:00:00"),                   # negative_amount
    order("O9", "C4", "5", "2024-01-15T10:00:00", status="lost"),      # unknown_value
    order("O10", "C99", "30", "2024-01-16T10:00:00"),                  # unknown_customer
    order("O11", "C1", "123456789012345678", "2024-01-17T10:00:00"),   # too large: bad_amount
    order("O12", "C1", "12,50", "2024-01-18T10:00:00"),                # bad_amount
    order("O13", "C1", "10", "2024-02-30T10:00:00"),                   # bad_timestamp (updated too: unparseable)
    order("O14", "C1", "10", "15/01/2024"),                            # bad_timestamp
    order("O15", "C2", "20", "2024-01-19T10:00:00", updated="2024-01-20T10:00:00"),
    order("O15", "C2", "21", "2024-01-19T10:00:00", updated="2024-01-20T10:00:00"),   # conflicting_versions
    order("O16", "C2", "30", "2024-01-21T10:00:00", updated="2024-01-21T10:00:00"),
    order("O16", "C2", "35", "2024-01-21T10:00:00", updated="2024-02-02T10:00:00"),   # corrected in February
    order("O17", "C9", "80", "2024-02-10T10:00:00"),
    order("O20", "C1", "12.50", "2024-03-05T10:00:00+02:00", updated="2024-01-22T10:00:00"),   # after_month_end
    order("O18", "C1", "55", "2024-02-11T10:00:00+01:00", cost="20"),
    order("O19", "C3", "45.5", "2024-02-12T10:00:00", currency="USD", cost="abc"),    # bad cost
]
FX_RATES = [
    {"currency": "USD", "month": "2024-01", "rate_to_reporting": "0.9"},
    {"currency": "USD", "month": "2024-02", "rate_to_reporting": "0.91"},
    {"currency": "CHF", "month": "2024-01", "rate_to_reporting": "0"},         # bad_fx_rate
    {"currency": "JPY", "month": "2024-1", "rate_to_reporting": "0.006"},      # bad month: unparseable
]
TIER_OVERRIDES = [
    {"override_id": "T1", "customer_id": "C2", "tier": "A", "reason": "strategic account", "approver": "anna",
     "valid_from": "2024-01", "valid_until": "", "updated_at": "2024-01-05T00:00:00"},
    {"override_id": "T2", "customer_id": "C3", "tier": "B", "reason": "call +31 6 12345678 first",
     "approver": "bert", "valid_from": "2024-01", "valid_until": "", "updated_at": "2024-01-06T00:00:00"},
    {"override_id": "T3", "customer_id": "C4", "tier": "B", "reason": "ref 2024-01-31 goodwill", "approver": "anna",
     "valid_from": "2024-13", "valid_until": "", "updated_at": "2024-01-07T00:00:00"},                 # bad_date
    {"override_id": "T4", "customer_id": "C1", "tier": "E", "reason": "test", "approver": "anna",
     "valid_from": "2024-01", "valid_until": "2024-02", "updated_at": "2024-01-08T00:00:00"},          # unknown tier
]
INVOICES = [
    {"invoice_id": "I1", "order_id": "O1", "customer_id": "C1", "issued_on": "2024-01-10", "due_on": "2024-02-09",
     "amount_due": "100.00", "currency": "EUR", "updated_at": "2024-01-10T12:00:00"},
    {"invoice_id": "I2", "order_id": "O3", "customer_id": "C2", "issued_on": "2024-01-12", "due_on": "2024-01-20",
     "amount_due": "250.50", "currency": "EUR", "updated_at": "2024-01-12T12:00:00"},
    {"invoice_id": "I3", "order_id": "O5", "customer_id": "C3", "issued_on": "2024-1-13", "due_on": "2024-02-12",
     "amount_due": "60", "currency": "USD", "updated_at": "2024-01-13T12:00:00"},                      # bad_date
    {"invoice_id": "I4", "order_id": "O17", "customer_id": "C9", "issued_on": "2024-02-10", "due_on": "2024-03-10",
     "amount_due": "80", "currency": "EUR", "updated_at": "2024-02-10T12:00:00"},
]
PAYMENTS = [
    {"payment_id": "P1", "invoice_id": "I1", "paid_at": "2024-01-20T09:00:00+01:00", "amount": "100",
     "updated_at": "2024-01-20T09:00:00"},
    {"payment_id": "P2", "invoice_id": "I2", "paid_at": "2024-02-05T09:00:00", "amount": "200.5",
     "updated_at": "2024-02-05T09:00:00"},
    {"payment_id": "P3", "invoice_id": "I9", "paid_at": "2024-01-25T09:00:00", "amount": "5",
     "updated_at": "2024-01-25T09:00:00"},                                                             # unknown_invoice
]


def _run_month(source: Path, warehouse: Path, month: str, restate: bool = False) -> None:
    """The pipeline's steps for one month on DuckDB, without the gates (not what is compared here)."""
    run = pipeline.start_run({"month": month, "source_dir": str(source), "warehouse": str(warehouse),
                              "restate": restate})
    for step in STEPS:
        if not step.startswith("gate_") and step != "publish_postgres":
            getattr(pipeline, step)(run)


def build_restated_warehouse(root: Path) -> Path:
    """The source above run on DuckDB for January and February, then February restated."""
    source = write_source(root / "source", customers=CUSTOMERS, orders=ORDERS, fx_rates=FX_RATES,
                          tier_overrides=TIER_OVERRIDES, invoices=INVOICES, payments=PAYMENTS)
    warehouse = root / "warehouse" / "tiering.duckdb"
    _run_month(source, warehouse, "2024-01")
    _run_month(source, warehouse, "2024-02")
    # January's orders change (O1's amount, O3 gone): February is computed again from version 2
    changed = [o for o in ORDERS if o["order_id"] != "O3"]
    changed[0] = {**changed[0], "amount": "110.00"}
    write_source(source, orders=changed)
    _run_month(source, warehouse, "2024-02", restate=True)
    return warehouse


@pytest.fixture(scope="module")
def restated_warehouse(tmp_path_factory) -> Path:
    return build_restated_warehouse(tmp_path_factory.mktemp("edges"))


def test_edges_and_a_restatement_on_postgres_equal_duckdb(restated_warehouse):
    reason = targets.pg_reachable()
    if reason:
        pytest.skip(reason)
    runs = targets.month_runs(restated_warehouse)
    january, february = (r.manifest["tables"]["orders"]["partitions"]["2024-01"]["version"] for r in runs)
    assert (january, february) == (1, 2)

    summary = run_on_target("postgres", restated_warehouse)
    assert summary["months"] == ["2024-01", "2024-02"]
    assert_same_as_duckdb(summary, "postgres", restated_warehouse, set(targets.COMPARED_MARTS))
    assert [b["landing"]["replaced"] for b in summary["builds"]] == [0, 1]    # orders/2024-01 v1 -> v2
    records = ("select run_id, source_table, landing_partition, source_line, rule, record "
               "from quarantine.rejected_rows")
    con = targets.pg_connect()
    try:
        rules = dict(con.execute("select rule, count(*) from quarantine.rejected_rows group by rule").fetchall())
        staged = con.execute("select count(*) from staging.stg_landing__orders where order_id = 'O3'").fetchone()[0]
        pg_records = {tuple(key): json.loads(record) for *key, record in con.execute(records).fetchall()}
    finally:
        con.close()
    duck = connect(restated_warehouse, read_only=True)
    try:
        duck_records = {tuple(key): json.loads(record) for *key, record in duck.execute(records).fetchall()
                        if key[0] in {r.run_id for r in runs}}      # (not February's first run)
    finally:
        duck.close()
    # every record the landed text, on PostgreSQL as on DuckDB: the month rules' rejections too
    assert pg_records == duck_records
    o20 = [r for (_, t, _, _, rule), r in pg_records.items() if t == "orders" and rule == "after_month_end"]
    assert o20 and o20[0]["ordered_at"] == "2024-03-05T10:00:00+02:00" and o20[0]["amount"] == "12.50"
    # the edges above were met on PostgreSQL (and equal DuckDB's, compared above)
    assert {"bad_timestamp", "impossible_timestamp", "date_before_1900", "bad_amount", "negative_amount",
            "unknown_value", "conflicting_versions", "personal_data_in_free_text", "bad_date", "bad_fx_rate",
            "unknown_currency", "unknown_customer", "unknown_invoice", "after_month_end"} <= set(rules)
    assert staged == 0        # version 1 of January's orders is gone from staging
