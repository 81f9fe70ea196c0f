"""Hand-computed Pareto tiers on ten customers, through every pipeline step (no Airflow).

Positive value in January 2024 (total 1,000 EUR):
    C01 400  rank 1  prior 0.00  -> A   (key account: ceil(7 x 5%) = 1 customer)
    C02 200  rank 2  prior 0.40  -> A   (tie with C03: C02 ranks first by id)
    C03 200  rank 3  prior 0.60  -> A
    C04 100  rank 4  prior 0.80  -> B   (exactly at the 80% boundary: not A)
    C05  50  rank 5  prior 0.90  -> B   (80 corrected to 50 by a later version of the order)
    C06  30  rank 6  prior 0.95  -> C   (exactly at 95%: not B)
    C07  20  rank 7  prior 0.98  -> C   (its negative order is quarantined, not counted)
    C08   0  no orders           -> C, inactive
    C09   0  only a cancelled order -> C, inactive
    C10   0  returned order (USD, converted but not counted) -> C, inactive
An order of C01 updated in February is not visible as of January.
"""
from __future__ import annotations

import duckdb
import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, order, write_source

EXPECTED = {
    # customer: (value_tier, rank, net_revenue, prior_share, cumulative_share, key_account, active)
    "C01": ("A", 1, 400, 0.00, 0.40, True, True),
    "C02": ("A", 2, 200, 0.40, 0.60, False, True),
    "C03": ("A", 3, 200, 0.60, 0.80, False, True),
    "C04": ("B", 4, 100, 0.80, 0.90, False, True),
    "C05": ("B", 5, 50, 0.90, 0.95, False, True),
    "C06": ("C", 6, 30, 0.95, 0.98, False, True),
    "C07": ("C", 7, 20, 0.98, 1.00, False, True),
    "C08": ("C", None, 0, None, None, False, False),
    "C09": ("C", None, 0, None, None, False, False),
    "C10": ("C", None, 0, None, None, False, False),
}


@pytest.fixture(scope="module")
def fixture_warehouse(tmp_path_factory):
    base = tmp_path_factory.mktemp("pareto")
    source = write_source(
        base / "source",
        customers=[customer(f"C{i:02d}") for i in range(1, 11)],
        orders=[
            order("O1", "C01", "300.00"),
            order("O2", "C01", "100.00", ordered_at="2024-01-20T09:00:00"),
            order("O3", "C02", "200.00"),
            order("O4", "C03", "150.00"),
            order("O5", "C03", "50.00"),
            order("O6", "C04", "100.00"),
            order("O7", "C05", "80.00", updated="2024-01-10T10:00:00"),
            order("O7", "C05", "50.00", updated="2024-01-15T10:00:00"),   # partial return
            order("O8", "C06", "30.00"),
            order("O9", "C07", "20.00"),
            order("O10", "C07", "-10.00"),                                  # quarantined
            order("O11", "C09", "500.00", status="cancelled"),
            order("O12", "C10", "90.00", status="returned", currency="USD"),
            order("O13", "C01", "999.00", ordered_at="2024-01-31T23:00:00",
                  updated="2024-02-01T08:00:00"),                           # not visible in January
        ],
        fx_rates=[{"currency": "USD", "month": "2024-01", "rate_to_reporting": "0.9"}],
    )
    warehouse = base / "wh" / "tiering.duckdb"
    run = run_steps({"month": "2024-01", "source_dir": str(source), "warehouse": str(warehouse)})
    return warehouse, run


def test_hand_computed_pareto_tiers(fixture_warehouse):
    warehouse, _ = fixture_warehouse
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute("""
        select customer_id, value_tier, value_rank, net_revenue, prior_share, cumulative_share,
               is_key_account, is_active, final_tier, credit_grade
        from marts.customer_tier_monthly where month = date '2024-01-01' order by customer_id""").fetchall()
    con.close()
    assert [r[0] for r in rows] == sorted(EXPECTED)
    for cid, tier, rank, revenue, prior, cumulative, key, active, final, grade in rows:
        exp = EXPECTED[cid]
        assert (tier, rank, float(revenue), key, active) == (exp[0], exp[1], exp[2], exp[5], exp[6]), cid
        if exp[3] is None:
            assert prior is None and cumulative is None, cid
        else:
            assert prior == pytest.approx(exp[3]) and cumulative == pytest.approx(exp[4]), cid
        assert grade == "unrated" and final == tier, cid  # no invoices: unrated, matrix keeps the tier


def test_quarantined_order_kept_with_reason(fixture_warehouse):
    warehouse, run = fixture_warehouse
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute("select source_table, source_line, rule, reason from quarantine.rejected_rows "
                       "where run_id = ?", [run["run_id"]]).fetchall()
    con.close()
    assert rows == [("orders", 12, "negative_amount",
                     "negative amount in 'amount': -10.00 (only a credit_note may be negative)")]


def test_summary_shares_sum_to_one(fixture_warehouse):
    warehouse, _ = fixture_warehouse
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = dict(con.execute("select final_tier, revenue_share from marts.tier_summary_monthly").fetchall())
    con.close()
    assert rows == pytest.approx({"A": 0.8, "B": 0.15, "C": 0.05})
