"""Hysteresis (value.downgrade_after_months = 2), by hand, on a 1-month value window.

Month values (EUR) and the Pareto rule tier (prior share < 0.80 -> A, < 0.95 -> B, else C):

            H1              H2              H3
    Jan     800  A          150  B (0.80)    50  C (0.95)
    Feb     100  B          850  A           50  C (0.95)
    Mar     100  B          850  A           50  C (0.95)
    Apr       0  C inactive 850  A           50  B (850/900 = 0.944)

With a downgrade after 2 months: H1 keeps A in February (one month below), drops to B in
March (two consecutive months below), and to C at once in April (no value: no hysteresis);
H2's upgrade in February and H3's in April happen at once.
"""
from __future__ import annotations

import duckdb
import pytest

from tests.conftest import run_steps
from tests.fixtures.rules import rules_file
from tests.fixtures.sources import customer, order, write_source

MONTHS = ("2024-01", "2024-02", "2024-03", "2024-04")
VALUES = {  # month -> customer -> amount
    "2024-01": {"H1": 800, "H2": 150, "H3": 50},
    "2024-02": {"H1": 100, "H2": 850, "H3": 50},
    "2024-03": {"H1": 100, "H2": 850, "H3": 50},
    "2024-04": {"H2": 850, "H3": 50},
}
EXPECTED = {  # (customer, month) -> (rule_tier, value_tier = final_tier, is_tier_held)
    ("H1", "2024-01"): ("A", "A", False), ("H2", "2024-01"): ("B", "B", False), ("H3", "2024-01"): ("C", "C", False),
    ("H1", "2024-02"): ("B", "A", True), ("H2", "2024-02"): ("A", "A", False), ("H3", "2024-02"): ("C", "C", False),
    ("H1", "2024-03"): ("B", "B", False), ("H2", "2024-03"): ("A", "A", False), ("H3", "2024-03"): ("C", "C", False),
    ("H1", "2024-04"): ("C", "C", False), ("H2", "2024-04"): ("A", "A", False), ("H3", "2024-04"): ("B", "B", False),
}


@pytest.fixture(scope="module")
def hysteresis_warehouse(tmp_path_factory):
    base = tmp_path_factory.mktemp("hysteresis")
    orders = [order(f"O-{month}-{cid}", cid, f"{amount}.00", ordered_at=f"{month}-10T10:00:00")
              for month, amounts in VALUES.items() for cid, amount in amounts.items()]
    source = write_source(base / "source", customers=[customer(c) for c in ("H1", "H2", "H3")], orders=orders)
    rules = rules_file(base, **{"value.window_months": 1, "value.downgrade_after_months": 2})
    warehouse = base / "wh" / "tiering.duckdb"
    for month in MONTHS:
        run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse), "rules_path": str(rules)})
    return warehouse


def test_a_downgrade_waits_for_two_months_below(hysteresis_warehouse):
    con = duckdb.connect(str(hysteresis_warehouse), read_only=True)
    try:
        rows = con.execute("""
            select t.customer_id, strftime(t.month, '%Y-%m'), t.rule_tier, m.value_tier, m.final_tier, t.is_tier_held
            from intermediate.int_customer_tier_months t
            join marts.customer_tier_monthly m using (customer_id, month)""").fetchall()
    finally:
        con.close()
    actual = {(c, m): (rule, value, held) for c, m, rule, value, final, held in rows}
    assert actual == EXPECTED
    assert all(value == final for _, _, _, value, final, _ in rows)   # no invoices: credit unrated


def test_explain_says_the_tier_is_held(hysteresis_warehouse):
    from datetime import date

    from tiering.explain import explain, format_explanation

    text = format_explanation(explain(hysteresis_warehouse, "H1", date(2024, 2, 1)))
    assert "rule tier this month B; value tier A held" in text


def test_the_default_rules_have_no_hysteresis():
    from tiering.rules import load_rules
    from tiering.settings import DEFAULT_RULES

    assert load_rules(DEFAULT_RULES).data["value"]["downgrade_after_months"] == 1
