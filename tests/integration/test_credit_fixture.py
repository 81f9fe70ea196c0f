"""Hand-computed credit measures and grades: four customers, five invoices each, month 2024-03
(month end 2024-03-31), with the default scorecard of config/tiering_rules.yml:

  on-time rate points: >=.95 40, >=.80 32, >=.60 24, >=.40 16, >=.20 8, else 0
  worst days late:     0 30, <=15 25, <=30 20, <=60 12, <=90 5, else 0
  overdue/invoiced:    0 30, <=.05 25, <=.15 18, <=.30 10, <=.50 5, else 0
  grade: A >= 85, B >= 65, C >= 30, else D

K1 always on time             due 4, on time 4 -> 1.00; worst 0; overdue 0        -> 40+30+30 = 100 A
K2 late, partial, on time     due 4 (I6 10 late, I7 half paid and open 46, I8 on time, I9 4 late)
                              on time 1/4 = .25; avg 15; worst 46; overdue 100/600 -> 8+12+10 = 30 C
K3 never pays                 due 5, dpd 121, 91, 60, 29, 0; overdue 400/500 = .8 -> 0+0+0 = 0 D, arrears
K4 paid after the month end   I17 (due 03-02) paid 04-05: open in March, dpd 29; on time 2/4 = .5;
                              worst 29; overdue 100/500 = .2                      -> 16+20+10 = 46 C
     ... and in April I17 is settled 34 days late, I20 paid on time: 3/5 = .6; worst 34; overdue 0
                                                                                  -> 24+12+30 = 66 B
K5 no invoices -> unrated (never D), value tier kept by the matrix.
"""
from __future__ import annotations

import duckdb
import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, order, write_source


def invoice(invoice_id, customer_id, issued, due, amount="100.00"):
    return {"invoice_id": invoice_id, "order_id": "", "customer_id": customer_id, "issued_on": issued,
            "due_on": due, "amount_due": amount, "currency": "EUR", "updated_at": f"{issued}T00:00:00"}


def payment(payment_id, invoice_id, paid, amount="100.00"):
    return {"payment_id": payment_id, "invoice_id": invoice_id, "paid_at": f"{paid}T12:00:00", "amount": amount,
            "updated_at": f"{paid}T12:00:00"}


INVOICES = [
    invoice("I01", "K1", "2024-01-05", "2024-02-04"), invoice("I02", "K1", "2024-01-20", "2024-02-19"),
    invoice("I03", "K1", "2024-02-05", "2024-03-06"), invoice("I04", "K1", "2024-02-20", "2024-03-21"),
    invoice("I05", "K1", "2024-03-10", "2024-04-09"),
    invoice("I06", "K2", "2024-01-01", "2024-01-31"), invoice("I07", "K2", "2024-01-15", "2024-02-14", "200.00"),
    invoice("I08", "K2", "2024-02-01", "2024-03-02"), invoice("I09", "K2", "2024-02-15", "2024-03-16"),
    invoice("I10", "K2", "2024-03-20", "2024-04-19"),
    invoice("I11", "K3", "2023-11-01", "2023-12-01"), invoice("I12", "K3", "2023-12-01", "2023-12-31"),
    invoice("I13", "K3", "2024-01-01", "2024-01-31"), invoice("I14", "K3", "2024-02-01", "2024-03-02"),
    invoice("I15", "K3", "2024-03-01", "2024-03-31"),
    invoice("I16", "K4", "2024-01-10", "2024-02-09"), invoice("I17", "K4", "2024-02-01", "2024-03-02"),
    invoice("I18", "K4", "2024-02-10", "2024-03-11"), invoice("I19", "K4", "2024-02-20", "2024-03-21"),
    invoice("I20", "K4", "2024-03-05", "2024-04-04"),
]
PAYMENTS = [
    payment("P01", "I01", "2024-02-01"), payment("P02", "I02", "2024-02-19"), payment("P03", "I03", "2024-03-01"),
    payment("P04", "I04", "2024-03-20"), payment("P05", "I05", "2024-03-30"),
    payment("P06", "I06", "2024-02-10"), payment("P07", "I07", "2024-02-01"), payment("P08", "I08", "2024-03-01"),
    payment("P09", "I09", "2024-03-20"),
    payment("P16", "I16", "2024-02-05"), payment("P17", "I17", "2024-04-05"), payment("P18", "I18", "2024-03-11"),
    payment("P19", "I19", "2024-03-25"), payment("P20", "I20", "2024-04-01"),
]

# customer: invoice_count, on_time_rate, avg_days_late, max_days_late, overdue_balance, dpd_bucket,
#           credit_score, credit_grade, arrears_flag
EXPECTED_MARCH = {
    "K1": (5, 1.0, 0.0, 0, 0, "current", 100, "A", False),
    "K2": (5, 0.25, 15.0, 46, 100, "31-60", 30, "C", False),
    "K3": (5, 0.0, 60.2, 121, 400, "90+", 0, "D", True),
    "K4": (5, 0.5, 8.25, 29, 100, "1-30", 46, "C", False),
    "K5": (0, None, None, None, 0, "current", None, "unrated", False),
}
EXPECTED_APRIL_K4 = (5, 0.6, (34 + 4) / 5, 34, 0, "current", 66, "B", False)


@pytest.fixture(scope="module")
def credit_warehouse(tmp_path_factory):
    base = tmp_path_factory.mktemp("credit")
    source = write_source(
        base / "source",
        customers=[customer(c) for c in ("K1", "K2", "K3", "K4", "K5")],
        orders=[order("O1", "K1", "1200.00", ordered_at="2024-01-15T10:00:00"),
                order("O3", "K3", "3000.00", ordered_at="2024-01-15T10:00:00"),
                order("O5", "K5", "600.00", ordered_at="2024-01-15T10:00:00")],
        invoices=INVOICES,
        payments=PAYMENTS,
    )
    warehouse = base / "wh" / "tiering.duckdb"
    for month in ("2024-03", "2024-04"):
        run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
    return warehouse


def _credit(warehouse, month):
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute("""
        select customer_id, invoice_count, on_time_rate, avg_days_late, max_days_late, overdue_balance,
               dpd_bucket, credit_score, credit_grade, arrears_flag
        from marts.customer_credit_monthly where month = ? order by customer_id""", [month]).fetchall()
    con.close()
    return {r[0]: (r[1], r[2], r[3], r[4], float(r[5]), *r[6:]) for r in rows}


def _approx(row: tuple) -> tuple:
    return tuple(pytest.approx(v) if isinstance(v, float) else v for v in row)


def test_march_measures_and_grades_by_hand(credit_warehouse):
    actual = _credit(credit_warehouse, "2024-03-01")
    assert {k: _approx(v) for k, v in EXPECTED_MARCH.items()} == actual


def test_a_payment_after_the_month_end_counts_only_from_the_next_month(credit_warehouse):
    assert _credit(credit_warehouse, "2024-03-01")["K4"][7] == "C"
    assert _credit(credit_warehouse, "2024-04-01")["K4"] == _approx(EXPECTED_APRIL_K4)


def test_final_tier_through_the_matrix(credit_warehouse):
    con = duckdb.connect(str(credit_warehouse), read_only=True)
    rows = con.execute("""select customer_id, value_tier, credit_grade, final_tier, credit_hold
                          from marts.customer_tier_monthly where month = date '2024-03-01'
                          order by customer_id""").fetchall()
    con.close()
    # value: K3 3000 (prior 0 -> A), K1 1200 (prior .625 -> A), K5 600 (prior .875 -> B); K2, K4 none (C)
    assert rows == [
        ("K1", "A", "A", "A", False),
        ("K2", "C", "C", "C", False),
        ("K3", "A", "D", "B", True),        # D credit caps A at B and holds credit
        ("K4", "C", "C", "C", False),
        ("K5", "B", "unrated", "B", False),  # unrated keeps the value tier
    ]


def test_suggested_credit_limit(credit_warehouse):
    con = duckdb.connect(str(credit_warehouse), read_only=True)
    limits = dict(con.execute("select customer_id, suggested_credit_limit from marts.customer_credit_monthly "
                              "where month = date '2024-03-01'").fetchall())
    con.close()
    # average monthly revenue (12-month window) x months by grade: A 3, B 2, C 1, D 0, unrated 1
    assert {k: float(v) for k, v in limits.items()} == {"K1": 300.0, "K2": 0.0, "K3": 0.0, "K4": 0.0, "K5": 50.0}
