"""Hand-computed tiers under the optional value rules: value.measure gross_margin and
value.dormant_tier (issue 34, items 2 and 3), through every pipeline step (no Airflow).

Ranking by margin, March 2024 (trailing 12 months; an order with an unknown cost adds nothing to
the margin; a customer without any known cost has margin 0):
    customer  revenue  cost               margin  rank  prior  pareto  spend(350/200/60)
    M02          500   100                  400     1   0.00    A       A
    M03          300   0                    300     2   0.40    A       B
    M01       10,000   9,900                100     3   0.70    A       C   (tie with M04: by id)
    M04        1,000   100 + unknown(800)   100     4   0.80    B       C
    M07           50   0                     50     5   0.90    B       D
    M08           60   10                    50     6   0.95    C       D
    M05          400   unknown                0     -   -       C       D   (not ranked, inactive)
    M06          100   150                  -50     -   -       C       D   (not ranked, inactive)
Key accounts: ceil(6 x 5%) = 1 -> M02 (by net revenue it would be M01).
RFM monetary on margin (rank among 6, ties share the lowest): M07, M08 -> 1; M01, M04 -> 2; M03 -> 4;
M02 -> 5. Stays on revenue: M01's customer-code scale digit is 2 (10,000 >= 10,000) and its
suggested credit limit (unrated: 1 x monthly revenue) 10,000 / 12 = 833.33.

Dormant tier (net revenue, pareto, value.dormant_tier: true), months 2024-02..2024-04:
    D01  500 in 2024-03                              Mar: A
    D07  100 in 2024-02                              Feb: A (prior 200/300); Mar: B (prior 500/600)
    D02  100 on 2023-02-15 (before every window)     D in every month (dormant since Feb, no win-back)
    D06  200 on 2023-03-31 (window of March starts 2023-04-01); an order of 2024-03 updated in April
         is not visible as of March                  Feb: A; Mar: D, lapsed -> win-back once; Apr: A
    D03  no orders                                   C
    D04  only a cancelled order                      C (not a purchase)
    D05  one completed order of amount 0             C (no positive-value purchase)
"""
from __future__ import annotations

import duckdb
import pytest

from tests.conftest import run_steps
from tests.fixtures.rules import rules_file
from tests.fixtures.sources import customer, order, write_source

MARGIN_EXPECTED = {
    # customer: (pareto value_tier, rank, ranking_value, net_revenue, key account, active, monetary score, spend tier)
    "M01": ("A", 3, 100, 10000, False, True, 2, "C"),
    "M02": ("A", 1, 400, 500, True, True, 5, "A"),
    "M03": ("A", 2, 300, 300, False, True, 4, "B"),
    "M04": ("B", 4, 100, 1000, False, True, 2, "C"),
    "M05": ("C", None, 0, 400, False, False, None, "D"),
    "M06": ("C", None, -50, 100, False, False, None, "D"),
    "M07": ("B", 5, 50, 50, False, True, 1, "D"),
    "M08": ("C", 6, 50, 60, False, True, 1, "D"),
}


def _margin_source(directory):
    return write_source(
        directory,
        customers=[customer(f"M{i:02d}") for i in range(1, 9)],
        orders=[
            order("P1", "M01", "10000.00", ordered_at="2024-03-05T10:00:00", cost="9900.00"),
            order("P2", "M02", "500.00", ordered_at="2024-02-05T10:00:00", cost="100.00"),
            order("P3", "M03", "300.00", ordered_at="2023-06-05T10:00:00", cost="0"),
            order("P4", "M04", "200.00", ordered_at="2024-03-06T10:00:00", cost="100.00"),
            order("P5", "M04", "800.00", ordered_at="2024-03-07T10:00:00"),            # unknown cost
            order("P6", "M05", "400.00", ordered_at="2024-03-08T10:00:00"),            # unknown cost
            order("P7", "M06", "100.00", ordered_at="2024-03-09T10:00:00", cost="150.00"),
            order("P8", "M07", "50.00", ordered_at="2024-03-10T10:00:00", cost="0"),
            order("P9", "M08", "60.00", ordered_at="2024-03-11T10:00:00", cost="10.00"),
        ],
    )


@pytest.fixture(scope="module")
def margin_warehouses(tmp_path_factory):
    base = tmp_path_factory.mktemp("margin")
    source = _margin_source(base / "source")
    warehouses = {}
    for rule_set, changes in (("pareto", {}),
                              ("spend", {"value.rule_set": "spend",
                                         "value.spend": {"a_min": 350, "b_min": 200, "c_min": 60}})):
        rules = rules_file(base / rule_set, **{"value.measure": "gross_margin", **changes})
        warehouse = base / rule_set / "wh" / "tiering.duckdb"
        run_steps({"month": "2024-03", "source_dir": str(source), "warehouse": str(warehouse),
                   "rules_path": str(rules)})
        warehouses[rule_set] = warehouse
    return warehouses


def _rows(warehouse, sql):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def test_margin_ranks_pareto_key_accounts_and_rfm(margin_warehouses):
    rows = _rows(margin_warehouses["pareto"], """
        select m.*, c.suggested_credit_limit
        from marts.customer_tier_monthly m
        join marts.customer_credit_monthly c using (customer_id, month)
        where month = date '2024-03-01' order by customer_id""")
    assert [r["customer_id"] for r in rows] == sorted(MARGIN_EXPECTED)
    for r in rows:
        tier, rank, ranking, revenue, key, active, monetary, _ = MARGIN_EXPECTED[r["customer_id"]]
        got = (r["value_tier"], r["value_rank"], float(r["ranking_value"]), float(r["net_revenue"]),
               r["is_key_account"], r["is_active"], r["monetary_score"])
        assert got == (tier, rank, ranking, revenue, key, active, monetary), r["customer_id"]
        assert r["value_measure"] == "gross_margin"
    m01 = next(r for r in rows if r["customer_id"] == "M01")
    assert m01["customer_code"].split("-")[2] == "2"          # scale digit on revenue (10,000), not margin
    assert float(m01["suggested_credit_limit"]) == pytest.approx(833.33, abs=0.01)
    assert float(m01["prior_share"]) == pytest.approx(0.70) and float(m01["value_share"]) == pytest.approx(0.10)


def test_margin_summary_names_the_measure(margin_warehouses):
    summary = _rows(margin_warehouses["pareto"], """
        select final_tier, value_measure, customer_count, net_revenue from marts.tier_summary_monthly
        where month = date '2024-03-01' order by final_tier""")
    assert [(s["final_tier"], s["value_measure"], s["customer_count"], float(s["net_revenue"])) for s in summary] == [
        ("A", "gross_margin", 3, 10800.0), ("B", "gross_margin", 2, 1050.0), ("C", "gross_margin", 3, 560.0)]
    from tiering.pipeline import format_summary
    text = format_summary({"month": "2024-03", "value_measure": "gross_margin", "quarantined": {},
                           "tiers": [{"tier": "A", "customers": 3, "revenue_share": 0.5}]})
    assert "ranked by gross_margin" in text


def test_margin_spend_thresholds_on_annual_margin(margin_warehouses):
    rows = _rows(margin_warehouses["spend"], """
        select customer_id, m.value_tier, t.annual_spend from marts.customer_tier_monthly m
        join intermediate.int_customer_tier_months t using (customer_id, month)
        where month = date '2024-03-01' order by customer_id""")
    assert {r["customer_id"]: r["value_tier"] for r in rows} == {c: e[7] for c, e in MARGIN_EXPECTED.items()}
    assert {r["customer_id"]: float(r["annual_spend"]) for r in rows} == {c: e[2] for c, e in MARGIN_EXPECTED.items()}


def test_explain_names_the_measure(margin_warehouses):
    from datetime import date

    from tiering.explain import explain, format_explanation

    text = format_explanation(explain(margin_warehouses["pareto"], "M04", date(2024, 3, 1)))
    assert "value measure    gross_margin   ranking value 100.00" in text   # M04's margin, its ranking value


# ------------------------------------------------------------------------------ dormant tier

DORMANT_EXPECTED = {
    # customer: {month: (final_tier, is_dormant, movement)}
    "D01": {"2024-02": ("C", False, "new"), "2024-03": ("A", False, "upgraded"), "2024-04": ("A", False, "unchanged")},
    "D02": {"2024-02": ("D", True, "new"), "2024-03": ("D", True, "unchanged"), "2024-04": ("D", True, "unchanged")},
    "D03": {"2024-02": ("C", False, "new"), "2024-03": ("C", False, "unchanged"), "2024-04": ("C", False, "unchanged")},
    "D04": {"2024-02": ("C", False, "new"), "2024-03": ("C", False, "unchanged"), "2024-04": ("C", False, "unchanged")},
    "D05": {"2024-02": ("C", False, "new"), "2024-03": ("C", False, "unchanged"), "2024-04": ("C", False, "unchanged")},
    # February: D06 200 (prior 0) A, D07 100 (prior 200/300) A; March: D06's order out of the window;
    # April: D06 700 (prior 0) A, D01 500 (prior 700/1300) A, D07 100 (prior 1200/1300) B
    "D06": {"2024-02": ("A", False, "new"), "2024-03": ("D", True, "lapsed"), "2024-04": ("A", False, "upgraded")},
    "D07": {"2024-02": ("A", False, "new"), "2024-03": ("B", False, "downgraded"),
            "2024-04": ("B", False, "unchanged")},
}


@pytest.fixture(scope="module")
def dormant_warehouse(tmp_path_factory):
    base = tmp_path_factory.mktemp("dormant")
    source = write_source(
        base / "source",
        customers=[customer(f"D{i:02d}") for i in range(1, 8)],
        orders=[
            order("Q1", "D01", "500.00", ordered_at="2024-03-05T10:00:00"),
            order("Q2", "D02", "100.00", ordered_at="2023-02-15T10:00:00"),
            order("Q4", "D04", "300.00", ordered_at="2023-09-15T10:00:00", status="cancelled"),
            order("Q5", "D05", "0.00", ordered_at="2023-09-15T10:00:00"),
            order("Q6", "D06", "200.00", ordered_at="2023-03-31T10:00:00"),
            # ordered in March, known only in April: not visible as of March, D06 active again in April
            order("Q7", "D06", "700.00", ordered_at="2024-03-20T10:00:00", updated="2024-04-02T10:00:00"),
            order("Q8", "D07", "100.00", ordered_at="2024-02-10T10:00:00"),
        ],
    )
    rules = rules_file(base / "rules", **{"value.dormant_tier": True})
    warehouse = base / "wh" / "tiering.duckdb"
    for month in ("2024-02", "2024-03", "2024-04"):
        run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse), "rules_path": str(rules)})
    return warehouse


def test_dormant_customers_get_d(dormant_warehouse):
    rows = _rows(dormant_warehouse, """
        select customer_id, strftime(month, '%Y-%m') as m, final_tier, value_tier, is_dormant, movement,
               contact_cadence, account_manager
        from marts.customer_tier_monthly order by customer_id, month""")
    actual = {}
    for r in rows:
        actual.setdefault(r["customer_id"], {})[r["m"]] = (r["final_tier"], r["is_dormant"], r["movement"])
        if r["is_dormant"]:   # matrix (D row) and policy (D: self-service) hold for dormant customers
            assert (r["value_tier"], r["contact_cadence"], r["account_manager"]) == ("D", "self-service", "none")
    assert actual == DORMANT_EXPECTED


def test_win_back_once_when_becoming_dormant(dormant_warehouse):
    rows = _rows(dormant_warehouse, """
        select customer_id, strftime(month, '%Y-%m') as m, reason from marts.crm_actions_monthly
        where action = 'win_back' order by month, customer_id""")
    assert [(r["customer_id"], r["m"]) for r in rows] == [("D06", "2024-03")]
    assert rows[0]["reason"] == "lapsed: no completed order in the value window (was tier A)"
    summary = _rows(dormant_warehouse, """select final_tier, customer_count from marts.tier_summary_monthly
                                          where month = date '2024-03-01' order by final_tier""")
    assert [(s["final_tier"], s["customer_count"]) for s in summary] == [("A", 1), ("B", 1), ("C", 3), ("D", 2)]


def test_explain_a_dormant_customer(dormant_warehouse):
    from datetime import date

    from tiering.explain import explain, format_explanation

    text = format_explanation(explain(dormant_warehouse, "D02", date(2024, 3, 1)))
    assert "final tier D (value tier D" in text
    assert "D if an earlier purchase (dormant)" in text
    assert "matrix[D][unrated] = D" in text
