"""tiering.pii: e-mail addresses and phone numbers found and scrubbed, the same in Python and in
the dbt row rule (macro contains_personal_data, rule personal_data_in_free_text, on DuckDB), and
the ordinary numbers of pipeline messages left alone."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import jinja2
import pytest

from tiering.dbt_runner import dbt_vars
from tiering.pii import contains_personal_data, scrub
from tiering.rules import load_rules
from tiering.runspec import RunSpec
from tiering.settings import DBT_PROJECT_DIR, DEFAULT_RULES

PERSONAL = [
    ("mail jane.doe@example.com today", "mail <email> today"),
    ("JANE.DOE+crm@Mail.Example.co.uk", "<email>"),
    ("call +31 6 12345678", "call <phone>"),
    ("call +1 (555) 123-4567.", "call <phone>."),
    ("+44-20-7946-0958", "<phone>"),
    ("(555) 123-4567", "<phone>"),
    ("555-123-4567", "<phone>"),
    ("555.123.4567", "<phone>"),
    ("020 7946 0958", "<phone>"),
    ("tel 06 12 34 56 78", "tel <phone>"),
    ("07700900123", "<phone>"),
    ("a@b.io or 555-123-4567", "<email> or <phone>"),
    ("row C1 (jane@example.com, +31 6 12345678) failed", "row C1 (<email>, <phone>) failed"),
    ("(+1 (555) 123-4567)", "(<phone>)"),
    # a phone number followed by a date: the date stays
    ("call +31 6 12345678 2024-01-31 run 202401-20261207T045512-ab12cd",
     "call <phone> 2024-01-31 run 202401-20261207T045512-ab12cd"),
]

# what pipeline messages hold: counts, dates, timestamps, run ids, amounts, ids, line numbers
ORDINARY = [
    "run 202401-20261207T045512-ab12cd failed",
    "published 2024-03 (run 202403-20261207T045512-ab12cd): 12 tables, 137000000 rows in 29.31 s",
    "orders: 3600000 loaded + 4 quarantined != 3600004 extracted",
    "amount 12345.67 EUR, 1234567.89 USD, 12 345 678 rows",
    "updated_at 2024-01-31T10:00:00+02:00 is after the as-of cutoff 2024-02-01 00:00:00",
    "valid 2024-01 to 2024-03 and 2024-05-31",
    "conflicting versions: same order_id and updated_at, different values (lines 2, 5, 1234)",
    "customer_id 'C000123' does not exist in customers as of the month end",
    "order O-2024-000123, invoice INV-000123-01, version 1.11.2",
    "no PostgreSQL answers at 127.0.0.1:5432",
    "+5 rows since 2024-01-01",
]


@pytest.mark.parametrize("text, scrubbed", PERSONAL)
def test_personal_data_is_found_and_scrubbed(text, scrubbed):
    assert contains_personal_data(text)
    assert scrub(text) == scrubbed


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_numbers_are_left_alone(text):
    assert not contains_personal_data(text)
    assert scrub(text) == text


def _dbt_rule_sql(column: str) -> str:
    """The DuckDB SQL of the dbt macro contains_personal_data (macros/cross_db.sql), rendered with the
    var `pii` a run passes (tiering.dbt_runner.dbt_vars)."""
    spec = RunSpec(month=date(2024, 1, 1), run_id="test", source_dir=Path("."))
    variables = dbt_vars(spec, load_rules(DEFAULT_RULES))
    macros = jinja2.Environment(extensions=["jinja2.ext.do"]).from_string(
        (DBT_PROJECT_DIR / "macros" / "cross_db.sql").read_text()).make_module(
        {"var": lambda name, default=None: variables.get(name, default)})
    return str(macros.default__contains_personal_data(column))


def test_dbt_rule_and_python_agree():
    con = duckdb.connect()
    texts = [t for t, _ in PERSONAL] + ORDINARY + ["", None]
    found = con.execute(f"select {_dbt_rule_sql('t')} from unnest(?) with ordinality as u(t, n) "
                        f"order by n", [texts]).fetchall()
    assert [r[0] for r in found] == [contains_personal_data(t) for t in texts]
    assert scrub(None) is None and scrub("") == ""
