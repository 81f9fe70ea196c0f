"""Property: paying an invoice later never improves the credit score or grade.

Runs the project's real compiled SQL (int_invoices__settlement -> int_invoice_ledger ->
int_customer_credit_measures -> int_customer_credit_graded; the first as a full build) on random payment
histories in an in-memory DuckDB, so each example takes milliseconds.
"""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiering.dbt_runner import run_dbt
from tiering.rules import load_rules
from tiering.runspec import RunSpec
from tiering.settings import dbt_target_dir

MONTH = date(2024, 6, 1)
MODELS = ["int_invoices__settlement", "int_invoice_ledger", "int_customer_credit_measures",
          "int_customer_credit_graded"]
GRADE_ORDER = {"A": 0, "B": 1, "C": 2, "D": 3}


@pytest.fixture(scope="module")
def credit_sql(tmp_path_factory) -> list[str]:
    warehouse = tmp_path_factory.mktemp("compile") / "tiering.duckdb"
    spec = RunSpec(month=MONTH, run_id="property", source_dir=Path("."), warehouse=warehouse)
    run_dbt("compile", spec, load_rules(), "--select", " ".join(MODELS))
    compiled = dbt_target_dir() / "compiled" / "tiering" / "models" / "intermediate"
    return [(name, (compiled / f"{name}.sql").read_text()) for name in MODELS]


@pytest.fixture(scope="module")
def con(credit_sql):
    con = duckdb.connect()
    con.execute("attach ':memory:' as tiering; use tiering; set TimeZone = 'UTC'")
    con.execute("create schema intermediate")
    con.execute("""create table intermediate.int_invoices__as_of (invoice_id varchar, order_id varchar,
        customer_id varchar, issued_on date, due_on date, amount_due decimal(18, 4), currency varchar,
        updated_at timestamp)""")
    con.execute("""create table intermediate.int_payments__as_of (payment_id varchar, invoice_id varchar,
        paid_at timestamp, amount decimal(18, 4), updated_at timestamp)""")
    con.execute("create table intermediate.int_fx_rates__as_of (currency varchar, rate_month date, "
                "rate_to_reporting decimal(18, 8))")
    con.execute("create table intermediate.int_customer_value_monthly as "
                "select 'X' as customer_id, cast(1200 as decimal(18, 4)) as net_revenue")
    yield con
    con.close()


def grade_of(con, credit_sql, invoices, payments) -> tuple[int | None, str]:
    con.execute("delete from intermediate.int_invoices__as_of; delete from intermediate.int_payments__as_of")
    for i, (issued, term, amount) in enumerate(invoices):
        con.execute("insert into intermediate.int_invoices__as_of values (?, null, 'X', ?, ?, ?, 'EUR', ?)",
                    [f"I{i}", issued, issued + timedelta(days=term), amount, issued])
    for j, (invoice, paid, amount) in enumerate(payments):
        con.execute("insert into intermediate.int_payments__as_of values (?, ?, ?, ?, ?)",
                    [f"P{j}", f"I{invoice}", paid, amount, paid])
    for name, sql in credit_sql:
        con.execute(f"create or replace table intermediate.{name} as {sql}")
    return con.execute("select credit_score, credit_grade from intermediate.int_customer_credit_graded").fetchone()


invoice_st = st.tuples(st.integers(0, 330), st.sampled_from([0, 14, 30, 60]), st.integers(1, 5000))


@st.composite
def histories(draw):
    invoices = draw(st.lists(invoice_st, min_size=1, max_size=6))
    invoices = [(date(2023, 7, 1) + timedelta(days=d), term, amount) for d, term, amount in invoices]
    payments = []
    for i, (issued, _term, amount) in enumerate(invoices):
        # each invoice: unpaid, paid in full, or paid in two parts, some days after issue
        kind = draw(st.sampled_from(["none", "full", "split"]))
        if kind == "full":
            payments.append((i, issued + timedelta(days=draw(st.integers(0, 200))), amount))
        elif kind == "split":
            first = draw(st.integers(1, max(1, amount - 1)))
            payments.append((i, issued + timedelta(days=draw(st.integers(0, 100))), first))
            payments.append((i, issued + timedelta(days=draw(st.integers(0, 200))), amount - first))
    late_invoice = draw(st.integers(0, len(invoices) - 1))
    delay = draw(st.integers(1, 120))
    never = draw(st.booleans())
    return invoices, payments, late_invoice, delay, never


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_paying_later_never_improves_the_grade(con, credit_sql, history):
    invoices, payments, late_invoice, delay, never = history
    later = [(i, paid + timedelta(days=delay), amount) if i == late_invoice else (i, paid, amount)
             for i, paid, amount in payments]
    if never:
        later = [p for p in payments if p[0] != late_invoice]
    score, grade = grade_of(con, credit_sql, invoices, payments)
    later_score, later_grade = grade_of(con, credit_sql, invoices, later)
    if grade == "unrated":
        assert later_grade == "unrated"   # the same invoices are due: lateness cannot rate a customer
        return
    assert later_score <= score
    assert GRADE_ORDER[later_grade] >= GRADE_ORDER[grade]


def test_no_invoice_due_is_unrated_not_d(con, credit_sql):
    assert grade_of(con, credit_sql, [(date(2024, 6, 20), 30, 100)], []) == (None, "unrated")
