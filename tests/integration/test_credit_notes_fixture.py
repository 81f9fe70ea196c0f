"""Hand-computed tiers with returns booked as credit notes (issue 34, item 1), through every
pipeline step (no Airflow), months 2024-02 and 2024-03, default rules (pareto on net revenue).

A credit note (status credit_note) has an amount of zero or less and counts against value in the
month of its own ordered_at; its cost (the cost of the goods returned, written non-negative) is
taken back from the cost, so amount - cost is the margin it takes back, and a credit note with an
unknown cost adds nothing to the margin. Credit notes are not orders: order count, recency and the
potential model's purchases are the completed orders'.

    customer  lines (EUR unless said)                                    net Mar  orders  recency
    A01  3,000 (2024-01-10, cost 1,800); 2,000 (2024-03-20, no cost)      5,000      2      11
    F02  77,000 (2024-03-05, cost 40,000); full return -77,000 the same       0      1      26
         day (cost 40,000)                                               (not active; gross 77,000
                                                                          would rank first)
    P03  3,000 (2024-02-10, cost 1,800); partial return -2,000              1,000      1      50
         (2024-02-20, cost 1,200)
    L04  2,500 (2024-02-15, cost 1,500); full return -2,500 dated         0 (Feb 2,500)  1    45
         2024-03-12, a later month (cost 1,500)                          (lapsed in March)
    U05  1,500 (2024-03-01, cost 900); return -300 (2024-03-15, no cost,   1,200      1      30
         original_order_id of no order in the source: kept)
    N06  100 (2024-03-02, cost 50); return of an order older than the      -300      1      29
         source, -800 USD at 0.5 = -400 (cost 400 USD = 200)              (not active; credit
                                                                          limit 0, not negative)
    Q07  900 (2024-03-04, cost 500); a credit note of +150 (quarantined:      900      1      27
         positive_credit_note); a completed order of -50 (quarantined:
         negative_amount)
    Z08  600 (2024-03-08, cost 300); a credit note of 0.00 (no cost)         600      1      23
    C09  100 (2024-03-25, no cost)                                           100      1       6

March, ranked (total 8,800):  A01 5,000 prior 0 A | U05 1,200 prior 5,000 (0.568) A |
    P03 1,000 prior 6,200 (0.705) A | Q07 900 prior 7,200 (0.818) B | Z08 600 prior 8,100 (0.920) B |
    C09 100 prior 8,700 (0.989) C; F02, L04, N06 not active: C. Key account: ceil(6 x 5%) = 1: A01.
February (total 6,500): A01 3,000 A | L04 2,500 prior 3,000 (0.462) A | P03 1,000 prior 5,500
    (0.846) B; the others C (no value yet).
RFM in March among the 6 ranked (score = 1 + floor((rank - 1) x 5 / 6), ties share the lowest rank):
    monetary (net, smallest first): C09 1, Z08 1, Q07 2, P03 3 (gross 3,000 would put it above U05),
    U05 4, A01 5; frequency: A01 (2 orders) 5, the rest (1 order each: a credit note is no order) 1;
    recency (most days first): P03 1, U05 1 (30 days: its return of 03-15 does not count), Q07 2,
    Z08 3, A01 4, C09 5.
Average order value = net revenue / completed orders: A01 2,500, F02 0, N06 -300.
Gross margin (amount - cost, lines with a known cost): A01 1,200 (the 2,000 order has no cost);
    F02 37,000 - 37,000 = 0; P03 1,200 - 800 = 400; L04 1,000 - 1,000 = 0; U05 600 (its return has
    no cost: adds nothing); N06 50 - 200 = -150; Q07 400; Z08 300; C09 NULL (no cost known).
Cost known share = booked amounts (by size) with a known cost / all booked: A01 3,000 / 5,000 = 0.6,
    U05 1,500 / 1,800.
Customer code scale digit (net revenue): F02 1 (77,000 gross would be 2).
"""
from __future__ import annotations

from datetime import date

import duckdb
import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, order, write_source

CUSTOMERS = ("A01", "F02", "P03", "L04", "U05", "N06", "Q07", "Z08", "C09")

MARCH = {
    # customer: (value_tier, rank, net_revenue, order_count, recency_days, active, key account,
    #            monetary, frequency, recency score, avg_order_value, gross_margin, movement)
    "A01": ("A", 1, 5000, 2, 11, True, True, 5, 5, 4, 2500, 1200, "unchanged"),
    "F02": ("C", None, 0, 1, 26, False, False, None, None, None, 0, 0, "unchanged"),
    "P03": ("A", 3, 1000, 1, 50, True, False, 3, 1, 1, 1000, 400, "upgraded"),
    "L04": ("C", None, 0, 1, 45, False, False, None, None, None, 0, 0, "lapsed"),
    "U05": ("A", 2, 1200, 1, 30, True, False, 4, 1, 1, 1200, 600, "upgraded"),
    "N06": ("C", None, -300, 1, 29, False, False, None, None, None, -300, -150, "unchanged"),
    "Q07": ("B", 4, 900, 1, 27, True, False, 2, 1, 2, 900, 400, "upgraded"),
    "Z08": ("B", 5, 600, 1, 23, True, False, 1, 1, 3, 600, 300, "upgraded"),
    "C09": ("C", 6, 100, 1, 6, True, False, 1, 1, 5, 100, None, "unchanged"),
}
FEBRUARY = {"A01": ("A", 3000), "L04": ("A", 2500), "P03": ("B", 1000), "F02": ("C", 0), "U05": ("C", 0),
            "N06": ("C", 0), "Q07": ("C", 0), "Z08": ("C", 0), "C09": ("C", 0)}


def credit_note(order_id: str, customer_id: str, amount: str, ordered_at: str, original: str = "",
                cost: str = "", currency: str = "EUR") -> dict:
    return {**order(order_id, customer_id, amount, ordered_at=ordered_at, status="credit_note", currency=currency,
                    cost=cost), "original_order_id": original}


ORDERS = [
    order("S01A", "A01", "3000.00", ordered_at="2024-01-10T10:00:00", cost="1800.00"),
    order("S01B", "A01", "2000.00", ordered_at="2024-03-20T10:00:00"),
    order("S02", "F02", "77000.00", ordered_at="2024-03-05T10:00:00", cost="40000.00"),
    credit_note("R02", "F02", "-77000.00", "2024-03-05T16:00:00", original="S02", cost="40000.00"),
    order("S03", "P03", "3000.00", ordered_at="2024-02-10T10:00:00", cost="1800.00"),
    credit_note("R03", "P03", "-2000.00", "2024-02-20T10:00:00", original="S03", cost="1200.00"),
    order("S04", "L04", "2500.00", ordered_at="2024-02-15T10:00:00", cost="1500.00"),
    credit_note("R04", "L04", "-2500.00", "2024-03-12T10:00:00", original="S04", cost="1500.00"),
    order("S05", "U05", "1500.00", ordered_at="2024-03-01T10:00:00", cost="900.00"),
    credit_note("R05", "U05", "-300.00", "2024-03-15T10:00:00", original="O-BEFORE-HISTORY"),
    order("S06", "N06", "100.00", ordered_at="2024-03-02T10:00:00", cost="50.00"),
    credit_note("R06", "N06", "-800.00", "2024-03-03T10:00:00", original="S-2019-17", cost="400.00",
                currency="USD"),
    order("S07", "Q07", "900.00", ordered_at="2024-03-04T10:00:00", cost="500.00"),
    credit_note("R07", "Q07", "150.00", "2024-03-05T10:00:00", original="S07"),         # positive: quarantined
    order("S07N", "Q07", "-50.00", ordered_at="2024-03-06T10:00:00"),                 # negative: quarantined
    order("S08", "Z08", "600.00", ordered_at="2024-03-08T10:00:00", cost="300.00"),
    credit_note("R08", "Z08", "0.00", "2024-03-09T10:00:00", original="S08"),
    order("S09", "C09", "100.00", ordered_at="2024-03-25T10:00:00"),
]
FX_RATES = [{"currency": "USD", "month": m, "rate_to_reporting": "0.5"} for m in ("2024-01", "2024-02", "2024-03")]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    base = tmp_path_factory.mktemp("credit-notes")
    source = write_source(base / "source", extra_columns={"orders": ("original_order_id",)},
                          customers=[customer(c) for c in CUSTOMERS], orders=ORDERS, fx_rates=FX_RATES)
    warehouse = base / "wh" / "tiering.duckdb"
    for month in ("2024-02", "2024-03"):
        run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
    return warehouse


def _rows(warehouse, sql, params=()):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def _number(value):
    return None if value is None else float(value)


def test_march_tiers_value_and_rfm(warehouse):
    rows = _rows(warehouse, """
        select * from marts.customer_tier_monthly where month = date '2024-03-01' order by customer_id""")
    assert sorted(r["customer_id"] for r in rows) == sorted(CUSTOMERS)
    for r in rows:
        got = (r["value_tier"], r["value_rank"], float(r["net_revenue"]), r["order_count"], r["recency_days"],
               r["is_active"], r["is_key_account"], r["monetary_score"], r["frequency_score"], r["recency_score"],
               _number(r["avg_order_value"]), _number(r["gross_margin"]), r["movement"])
        assert got == MARCH[r["customer_id"]], r["customer_id"]
        assert r["final_tier"] == r["value_tier"]            # no invoices: unrated, the matrix keeps the tier
    by_id = {r["customer_id"]: r for r in rows}
    assert by_id["Q07"]["prior_share"] == pytest.approx(7200 / 8800)
    assert by_id["P03"]["prior_share"] == pytest.approx(6200 / 8800)
    assert by_id["F02"]["customer_code"].split("-")[2] == "1"   # scale digit on net revenue (0), not 77,000


def test_february_does_not_see_the_return_dated_in_march(warehouse):
    rows = _rows(warehouse, """
        select customer_id, value_tier, net_revenue from marts.customer_tier_monthly
        where month = date '2024-02-01' order by customer_id""")
    assert {r["customer_id"]: (r["value_tier"], float(r["net_revenue"])) for r in rows} == FEBRUARY


def test_cost_known_share_and_credit_limit(warehouse):
    rows = _rows(warehouse, """
        select t.customer_id, t.cost_known_share, c.suggested_credit_limit
        from intermediate.int_customer_tier_months t
        join marts.customer_credit_monthly c using (customer_id, month)
        where month = date '2024-03-01' order by customer_id""")
    by_id = {r["customer_id"]: r for r in rows}
    assert by_id["A01"]["cost_known_share"] == pytest.approx(0.6)
    assert by_id["U05"]["cost_known_share"] == pytest.approx(1500 / 1800)
    assert by_id["C09"]["cost_known_share"] is None and by_id["N06"]["cost_known_share"] is None
    # unrated: 1 month of revenue = net revenue / 12; below zero: 0
    assert float(by_id["A01"]["suggested_credit_limit"]) == pytest.approx(416.67, abs=0.01)
    assert float(by_id["N06"]["suggested_credit_limit"]) == 0
    assert float(by_id["F02"]["suggested_credit_limit"]) == 0


def test_summary_counts_credit_notes_in_the_tier_revenue(warehouse):
    rows = _rows(warehouse, """
        select final_tier, customer_count, active_customer_count, net_revenue from marts.tier_summary_monthly
        where month = date '2024-03-01' order by final_tier""")
    assert [(r["final_tier"], r["customer_count"], r["active_customer_count"], float(r["net_revenue"]))
            for r in rows] == [("A", 3, 3, 7200.0), ("B", 2, 2, 1500.0), ("C", 4, 1, -200.0)]


def test_credit_notes_loaded_and_quarantined_by_their_rules(warehouse):
    quarantined = _rows(warehouse, """
        select json_extract_string(record, '$.order_id') as order_id, rule, reason
        from quarantine.rejected_rows where month = date '2024-03-01' and source_table = 'orders'
        order by order_id""")
    assert [(q["order_id"], q["rule"]) for q in quarantined] == [("R07", "positive_credit_note"),
                                                                ("S07N", "negative_amount")]
    assert "150.00" in quarantined[0]["reason"]
    staged = _rows(warehouse, """
        select order_id, order_status, cast(amount as double) as amount from intermediate.int_orders__as_of
        where order_status = 'credit_note' order by order_id""")
    # every other credit note is kept, whether its original order is in the source (R02, R03, R04,
    # R08) or not (R05, R06: returns of orders older than the source's history)
    assert [(s["order_id"], s["amount"]) for s in staged] == [
        ("R02", -77000.0), ("R03", -2000.0), ("R04", -2500.0), ("R05", -300.0), ("R06", -800.0), ("R08", 0.0)]


def test_the_potential_model_sees_completed_orders_only(warehouse):
    """Purchases for BG/NBD and Gamma-Gamma (tiering.potential): a credit note is no purchase day."""
    from tiering import potential

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute(potential.PURCHASES_VIEW_SQL)
        summary = potential.summarise(con, date(2024, 4, 1)).set_index("customer_id")
    finally:
        con.close()
    assert summary.loc["A01", "frequency"] == 1 and summary.loc["A01", "monetary"] == 2000
    # P03 (sale 02-10, return 02-20), U05 and Z08 would have a second purchase day with their credit notes
    for customer_id in ("F02", "P03", "U05", "Z08", "L04"):
        assert summary.loc[customer_id, "frequency"] == 0, customer_id
    assert summary.loc["U05", "recency"] == 0


def test_a_file_without_original_order_id_is_valid(tmp_path):
    """The column is optional: a source without it has its credit notes valid as well (landing and
    the row rules of staging, without the rest of the month)."""
    from tiering import pipeline

    source = write_source(tmp_path / "source", customers=[customer("C1")], orders=[
        order("O1", "C1", "100.00", ordered_at="2024-03-02T10:00:00"),
        credit_note("O2", "C1", "-40.00", "2024-03-03T10:00:00")])
    assert "original_order_id" not in (source / "orders.csv").read_text().splitlines()[0]
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    run = pipeline.start_run({"month": "2024-03", "source_dir": str(source), "warehouse": str(warehouse)})
    for step in ("extract_and_land", "transform_staging"):
        getattr(pipeline, step)(run)
    assert _rows(warehouse, "select order_id, order_status, cast(amount as double) as amount, original_order_id "
                            "from intermediate.int_orders__as_of order by order_id") == [
        {"order_id": "O1", "order_status": "completed", "amount": 100.0, "original_order_id": None},
        {"order_id": "O2", "order_status": "credit_note", "amount": -40.0, "original_order_id": None}]
    assert _rows(warehouse, "select count(*) as n from quarantine.rejected_rows where source_table = 'orders'") == \
        [{"n": 0}]
