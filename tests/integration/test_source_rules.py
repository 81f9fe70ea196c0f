"""What the source may hold and what a run makes of it, through the pipeline's steps: every row
rule puts the rows that break it in quarantine.rejected_rows with its reason, source file, line
and partition; a month's rows extracted = valid + rejected, per table and partition; rows dated
later count from their month on; CSV files with quoted headers, another delimiter or another
encoding; a landing that failed half-way retried.

Source (hostile rows first, then valid filler rows that keep each table's rejected share under
gate (b)'s max_quarantined_share; line 1 is the header). customers.csv is cp1252, declared in
source.yml, with every value quoted; orders.csv has a quoted header and CRLF line ends.

  customers  2 KJ 'José' (valid)              3 KE created 'epoch'          4 KM kind '  ' (spaces)
             5 KU kind 'company'              6 KB created 2023-02-30       7 K1899 created 1899-12-31
             8/9 KC two regions at one updated_at                             10 KN created 2024-02-03
             11 KX updated '2024-13-01T00:00:00'                              12.. K1..K9, KF01..KF50
  orders     2 OX-INF ordered 'infinity'      3 OX-NINF '-infinity'         4 OX-UPD updated 'infinity'
             5 OX-1899 ordered 1899-12-31     6 OX-LATE K9 '12.50' ordered 2024-02-05T10:00:00+02:00, updated in January
             7 OX-MISS amount ''              8 OX-SPACE customer '   '     9 OX-BADAMT amount '12,50'
             10 OX-NEG amount -5.00           11 OX-NEGCOST cost -1.00      12 OX-CN credit_note of 5.00
             13 OX-STATUS 'shipped'           14 OX-BADTS ordered 2024-01-32
             15 OX-CUR currency XXX           16 OX-NOFX USD in 2024-01 (USD has rates for 2023-12, 2024-02)
             17 OX-KN for KN (first seen in February): unknown in January, valid in February
             18 OX-KE for KE (always rejected)
             19/20 OX-CONF K2 50.00 / 60.00 at one updated_at; 21 its third version, 70.00 (February)
             22 OX-Y K1 10.00; 23 OX-Y's version updated in year 12024
             24 OX-TZ K3 20.00 ordered 2024-01-31T23:30:00-02:00 (February 1 in UTC)
             25 OX-TZ2 K4 30.00 ordered 2024-02-01T00:30:00+01:00 (January 31 in UTC)
             26 OX-EMPTYUPD updated ''        27 order_id ''                28.. OF000..OF149 (10.00, K1..K6)
  invoices   2 IX-LATE issued 2024-02-10, updated in January   3 IX-1899 issued 1899-06-01
             4 IX-DUE due before issued       5 IX-BADDATE issued '05/01/2024'
             6 IX-KN for KN                   7 IX-NEG amount_due -3        8.. F00..F39 (K1)
  payments   2 PX-LATE paid 2024-02-02, updated in January     3 PX-INV for invoice NOPE
             4 PX-KN for IX-KN                5 PX-AMT amount 'ten'         6.. PF00..PF39
  fx_rates   2 EUR 2024-01 1.1                3 GBP 2023-11 0               4 JPY '2024-13'
             5 CHF 2024-01 'abc'              6 CHF 2023-10 -1.0            7/8 SEK 2024-01 0.085 / 0.086
             9 USD 2023-12                    10 USD 2024-02                11.. NOK, DKK, PLN 2022-01..2023-12
  tier_overrides 2 TO-PII reason with an e-mail   3 TO-TIER tier Z      4 TO-MONTH valid_from '2024-1'
             5 TO-KN for KN                   6.. TOF01..TOF40 (KF01..KF40, tier D)
January and February are run.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, fx_rate, order, write_source
from tests.fixtures.warehouse import query
from tiering import pipeline
from tiering.source import TABLES, SourceError
from tiering.steps import STEPS

JAN = "2024-01-10T10:00:00"

CUSTOMERS = [
    customer("KJ", name="José"),
    customer("KE", created="epoch", updated="2023-06-01T00:00:00"),
    customer("KM", kind="  "),
    customer("KU", kind="company"),
    customer("KB", created="2023-02-30T00:00:00", updated="2023-03-01T00:00:00"),
    customer("K1899", created="1899-12-31T00:00:00", updated="2023-01-01T00:00:00"),
    customer("KC", region="North", updated="2023-05-01T00:00:00"),
    customer("KC", region="South", updated="2023-05-01T00:00:00"),
    customer("KN", created="2024-02-03T00:00:00"),
    customer("KX", updated="2024-13-01T00:00:00"),
    *(customer(f"K{i}") for i in range(1, 10)),
    *(customer(f"KF{i:02d}") for i in range(1, 51)),
]


def _order(order_id: str, customer_id: str = "K1", amount: str = "10.00", ordered_at: str = JAN, **kw) -> dict:
    return order(order_id, customer_id, amount, ordered_at, **kw)


ORDERS = [
    _order("OX-INF", ordered_at="infinity", updated="2024-01-15T10:00:00"),
    _order("OX-NINF", ordered_at="-infinity", updated="2024-01-15T10:00:00"),
    _order("OX-UPD", ordered_at="2024-01-12T10:00:00", updated="infinity"),
    _order("OX-1899", ordered_at="1899-12-31T10:00:00", updated="2024-01-15T10:00:00"),
    _order("OX-LATE", "K9", "12.50", "2024-02-05T10:00:00+02:00", updated="2024-01-20T10:00:00"),
    _order("OX-MISS", amount=""),
    _order("OX-SPACE", customer_id="   "),
    _order("OX-BADAMT", amount="12,50"),
    _order("OX-NEG", amount="-5.00"),
    _order("OX-NEGCOST", cost="-1.00"),
    _order("OX-CN", amount="5.00", status="credit_note"),
    _order("OX-STATUS", status="shipped"),
    _order("OX-BADTS", ordered_at="2024-01-32T10:00:00", updated="2024-01-15T10:00:00"),
    _order("OX-CUR", currency="XXX"),
    _order("OX-NOFX", ordered_at="2024-01-12T10:00:00", currency="USD"),
    _order("OX-KN", "KN", "40.00", "2024-01-15T10:00:00"),
    _order("OX-KE", "KE"),
    _order("OX-CONF", "K2", "50.00", "2024-01-20T10:00:00"),
    _order("OX-CONF", "K2", "60.00", "2024-01-20T10:00:00"),
    _order("OX-CONF", "K2", "70.00", "2024-01-20T10:00:00", updated="2024-02-10T10:00:00"),
    _order("OX-Y", "K1", "10.00", "2024-01-11T10:00:00"),
    _order("OX-Y", "K1", "99.00", "2024-01-11T10:00:00", updated="12024-01-05T10:00:00"),
    _order("OX-TZ", "K3", "20.00", "2024-01-31T23:30:00-02:00"),
    _order("OX-TZ2", "K4", "30.00", "2024-02-01T00:30:00+01:00"),
    {**_order("OX-EMPTYUPD"), "updated_at": ""},
    _order(""),
    *(_order(f"OF{i:03d}", f"K{i % 6 + 1}") for i in range(150)),
]


def _invoice(invoice_id: str, customer_id: str = "K1", issued: str = "2024-01-05", due: str = "2024-02-05",
             amount: str = "10.00", updated: str = "2024-01-05T00:00:00") -> dict:
    return {"invoice_id": invoice_id, "customer_id": customer_id, "issued_on": issued, "due_on": due,
            "amount_due": amount, "currency": "EUR", "updated_at": updated}


INVOICES = [
    _invoice("IX-LATE", issued="2024-02-10", due="2024-03-10", updated="2024-01-20T00:00:00"),
    _invoice("IX-1899", issued="1899-06-01", due="2024-03-10"),
    _invoice("IX-DUE", due="2024-01-01"),
    _invoice("IX-BADDATE", issued="05/01/2024"),
    _invoice("IX-KN", "KN", issued="2024-01-20", due="2024-02-20", updated="2024-01-20T00:00:00"),
    _invoice("IX-NEG", amount="-3"),
    *(_invoice(f"F{i:02d}") for i in range(40)),
]


def _payment(payment_id: str, invoice_id: str, paid: str = "2024-01-20T12:00:00", amount: str = "10.00",
             updated: str | None = None) -> dict:
    return {"payment_id": payment_id, "invoice_id": invoice_id, "paid_at": paid, "amount": amount,
            "updated_at": updated or paid}


PAYMENTS = [
    _payment("PX-LATE", "F00", paid="2024-02-02T12:00:00", amount="1.00", updated="2024-01-31T12:00:00"),
    _payment("PX-INV", "NOPE"),
    _payment("PX-KN", "IX-KN", paid="2024-01-25T12:00:00"),
    _payment("PX-AMT", "F01", amount="ten"),
    *(_payment(f"PF{i:02d}", f"F{i:02d}") for i in range(40)),
]
FX_RATES = [
    fx_rate("EUR", "2024-01", "1.1"), fx_rate("GBP", "2023-11", "0"), fx_rate("JPY", "2024-13", "0.006"),
    fx_rate("CHF", "2024-01", "abc"), fx_rate("CHF", "2023-10", "-1.0"), fx_rate("SEK", "2024-01", "0.085"),
    fx_rate("SEK", "2024-01", "0.086"), fx_rate("USD", "2023-12", "0.9"), fx_rate("USD", "2024-02", "0.92"),
    *(fx_rate(c, f"{y}-{m:02d}", "0.1") for c in ("NOK", "DKK", "PLN") for y in (2022, 2023) for m in range(1, 13)),
]


def _override(override_id: str, customer_id: str, tier: str = "D", reason: str = "dormant",
              valid_from: str = "2024-01") -> dict:
    return {"override_id": override_id, "customer_id": customer_id, "tier": tier, "reason": reason,
            "approver": "Boss", "valid_from": valid_from, "valid_until": "", "updated_at": "2024-01-02T00:00:00"}


TIER_OVERRIDES = [
    _override("TO-PII", "K1", "A", reason="key account, call jan@example.com"),
    _override("TO-TIER", "K1", "Z"),
    _override("TO-MONTH", "K1", valid_from="2024-1"),
    _override("TO-KN", "KN", "B"),
    *(_override(f"TOF{i:02d}", f"KF{i:02d}") for i in range(1, 41)),
]

CONFLICT = "conflicting versions: same {} and updated_at, different values"


def _unknown(kind: str, reference: str) -> str:
    return f"unknown {kind} '{reference}' as of the end of the month computed"

LATER = "is after the end of the month computed (valid from the month it falls in)"

# (table, id, source line, partition, rule, reason): rejected in every month
ALWAYS = [
    ("customers", "KE", 3, "2023-06", "impossible_timestamp",
     "special value 'epoch' in 'created_at' is no real moment (expected ISO 8601)"),
    ("customers", "KM", 4, "2023-01", "missing_value", "missing required field 'customer_kind'"),
    ("customers", "KU", 5, "2023-01", "unknown_value",
     "unknown customer_kind 'company' (expected individual | organisation)"),
    ("customers", "KB", 6, "2023-03", "bad_timestamp",
     "unparseable timestamp in 'created_at': '2023-02-30T00:00:00' (expected ISO 8601)"),
    ("customers", "K1899", 7, "2023-01", "date_before_1900", "created_at 1899-12-31T00:00:00 is before 1900-01-01"),
    ("customers", "KC", 8, "2023-05", "conflicting_versions", CONFLICT.format("customer_id")),
    ("customers", "KC", 9, "2023-05", "conflicting_versions", CONFLICT.format("customer_id")),
    ("customers", "KX", 11, "unparseable", "bad_timestamp",
     "unparseable timestamp in 'updated_at': '2024-13-01T00:00:00' (expected ISO 8601)"),
    ("orders", "OX-INF", 2, "2024-01", "impossible_timestamp",
     "special value 'infinity' in 'ordered_at' is no real moment (expected ISO 8601)"),
    ("orders", "OX-NINF", 3, "2024-01", "impossible_timestamp",
     "special value '-infinity' in 'ordered_at' is no real moment (expected ISO 8601)"),
    ("orders", "OX-UPD", 4, "unparseable", "impossible_timestamp",
     "special value 'infinity' in 'updated_at' is no real moment (expected ISO 8601)"),
    ("orders", "OX-1899", 5, "2024-01", "date_before_1900", "ordered_at 1899-12-31T10:00:00 is before 1900-01-01"),
    ("orders", "OX-MISS", 7, "2024-01", "missing_value", "missing required field 'amount'"),
    ("orders", "OX-SPACE", 8, "2024-01", "missing_value", "missing required field 'customer_id'"),
    ("orders", "OX-BADAMT", 9, "2024-01", "bad_amount", "amount 'amount' is not a number: '12,50'"),
    ("orders", "OX-NEG", 10, "2024-01", "negative_amount",
     "negative amount in 'amount': -5.00 (only a credit_note may be negative)"),
    ("orders", "OX-NEGCOST", 11, "2024-01", "negative_amount", "negative amount in 'cost': -1.00"),
    ("orders", "OX-CN", 12, "2024-01", "positive_credit_note", "a credit_note must have an amount of zero or less, "
                                                               "got 5.00"),
    ("orders", "OX-STATUS", 13, "2024-01", "unknown_value",
     "unknown status 'shipped' (expected completed | cancelled | returned | credit_note)"),
    ("orders", "OX-BADTS", 14, "2024-01", "bad_timestamp",
     "unparseable timestamp in 'ordered_at': '2024-01-32T10:00:00' (expected ISO 8601)"),
    ("orders", "OX-CUR", 15, "2024-01", "unknown_currency", "unknown currency 'XXX' (not EUR and not in fx_rates)"),
    ("orders", "OX-NOFX", 16, "2024-01", "missing_fx_rate", "no fx rate for USD in 2024-01"),
    ("orders", "OX-KE", 18, "2024-01", "unknown_customer", _unknown("customer", "KE")),
    ("orders", "OX-CONF", 19, "2024-01", "conflicting_versions", CONFLICT.format("order_id")),
    ("orders", "OX-CONF", 20, "2024-01", "conflicting_versions", CONFLICT.format("order_id")),
    ("orders", "OX-Y", 23, "unparseable", "impossible_timestamp", "updated_at 12024-01-05T10:00:00 is after "
                                                                  "9999-12-31"),
    ("orders", "OX-EMPTYUPD", 26, "unparseable", "missing_value", "missing required field 'updated_at'"),
    ("orders", "", 27, "2024-01", "missing_value", "missing required field 'order_id'"),
    ("invoices", "IX-1899", 3, "2024-01", "date_before_1900", "issued_on 1899-06-01 is before 1900-01-01"),
    ("invoices", "IX-DUE", 4, "2024-01", "due_before_issue", "due_on 2024-01-01 is before issued_on 2024-01-05"),
    ("invoices", "IX-BADDATE", 5, "2024-01", "bad_date",
     "unparseable date in 'issued_on': '05/01/2024' (expected YYYY-MM-DD)"),
    ("invoices", "IX-NEG", 7, "2024-01", "negative_amount", "negative amount in 'amount_due': -3"),
    ("payments", "PX-INV", 3, "2024-01", "unknown_invoice", _unknown("invoice", "NOPE")),
    ("payments", "PX-AMT", 5, "2024-01", "bad_amount", "amount 'amount' is not a number: 'ten'"),
    ("fx_rates", "EUR", 2, "2024-01", "bad_fx_rate", "the reporting currency EUR must have rate 1, got 1.1"),
    ("fx_rates", "GBP", 3, "2023-11", "bad_fx_rate", "fx rate must be positive, got 0"),
    ("fx_rates", "JPY", 4, "unparseable", "bad_date", "unparseable month in 'month': '2024-13' (expected YYYY-MM)"),
    ("fx_rates", "CHF", 5, "2024-01", "bad_amount", "amount 'rate_to_reporting' is not a number: 'abc'"),
    ("fx_rates", "CHF", 6, "2023-10", "negative_amount", "negative amount in 'rate_to_reporting': -1.0"),
    ("fx_rates", "SEK", 7, "2024-01", "conflicting_versions", "conflicting versions: same currency and month, "
                                                              "different rates"),
    ("fx_rates", "SEK", 8, "2024-01", "conflicting_versions", "conflicting versions: same currency and month, "
                                                              "different rates"),
    ("tier_overrides", "TO-PII", 2, "2024-01", "personal_data_in_free_text",
     "'reason' holds personal data (an e-mail address or phone number): write it without contact details"),
    ("tier_overrides", "TO-TIER", 3, "2024-01", "unknown_value", "unknown tier 'Z' (expected A | B | C | D)"),
    ("tier_overrides", "TO-MONTH", 4, "2024-01", "bad_date",
     "unparseable month in 'valid_from': '2024-1' (expected YYYY-MM)"),
]
# ... and in January only: the rows dated in February, and the rows that refer to KN (first seen
# in February) or to its invoice
JANUARY_ONLY = [
    ("orders", "OX-LATE", 6, "2024-01", "after_month_end", f"ordered_at 2024-02-05 08:00:00 {LATER}"),
    ("orders", "OX-KN", 17, "2024-01", "unknown_customer", _unknown("customer", "KN")),
    ("invoices", "IX-LATE", 2, "2024-01", "after_month_end", f"issued_on 2024-02-10 {LATER}"),
    ("invoices", "IX-KN", 6, "2024-01", "unknown_customer", _unknown("customer", "KN")),
    ("payments", "PX-LATE", 2, "2024-01", "after_month_end", f"paid_at 2024-02-02 12:00:00 {LATER}"),
    ("payments", "PX-KN", 4, "2024-01", "unknown_invoice",
     _unknown("invoice", "IX-KN")),
    ("tier_overrides", "TO-KN", 5, "2024-01", "unknown_customer",
     _unknown("customer", "KN")),
]
RULE_CODES = {"missing_value", "impossible_timestamp", "bad_timestamp", "bad_date", "date_before_1900", "bad_amount",
              "negative_amount", "positive_credit_note", "unknown_value", "personal_data_in_free_text", "bad_fx_rate",
              "due_before_issue", "conflicting_versions", "after_month_end", "unknown_currency", "missing_fx_rate",
              "unknown_customer", "unknown_invoice"}


def write_rules_source(directory: Path) -> Path:
    write_source(directory, orders=ORDERS, invoices=INVOICES, payments=PAYMENTS, fx_rates=FX_RATES,
                 tier_overrides=TIER_OVERRIDES)
    # orders: a quoted header line (valid CSV; its amounts once made the columns numbers), CRLF
    lines = (directory / "orders.csv").read_text().splitlines(keepends=True)
    header = ",".join(f'"{c}"' for c in lines[0].strip().split(","))
    (directory / "orders.csv").write_text(header + "\r\n" + "".join(lines[1:]))
    # customers: every value quoted, and cp1252 text, declared in source.yml
    with open(directory / "customers.csv", "w", newline="", encoding="cp1252") as fh:
        writer = csv.DictWriter(fh, fieldnames=TABLES["customers"].columns, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows({c: row.get(c, "") for c in TABLES["customers"].columns} for row in CUSTOMERS)
    (directory / "source.yml").write_text("encoding:\n  customers: cp1252\n")
    return directory


# what holds each table's rows of a month, valid or rejected (rejection_rule), per landed partition
CHECKED = {"customers": "staging.stg_landing__customers", "fx_rates": "staging.stg_landing__fx_rates",
           "orders": "intermediate.int_orders__checked", "invoices": "intermediate.int_invoices__checked",
           "payments": "intermediate.int_payments__checked",
           "tier_overrides": "intermediate.int_tier_overrides__checked"}


def _balance(warehouse: Path, run: dict) -> dict:
    """{(table, partition): (rows extracted, rows valid, rows rejected in quarantine, rows checked)} of a
    run, read right after it (the int_*__checked views are the last run's month)."""
    month = run["month"]
    extracted = {(t, p): n for t, p, n in query(warehouse, "select table_name, landing_partition, rows "
                                                           "from landing.partitions")}
    rejected = {(t, p): n for t, p, n in query(warehouse, """
        select source_table, landing_partition, count(*) from quarantine.rejected_rows where run_id = ?
        group by 1, 2""", [run["run_id"]])}
    checked = {}
    for table, relation in CHECKED.items():
        for partition, total, valid in query(warehouse, f"""
                select landing_partition, count(*), count(*) filter (where rejection_rule is null) from {relation}
                where landing_partition <= ? or landing_partition = 'unparseable' group by 1""", [month]):
            checked[(table, partition)] = (total, valid)
    return {key: (extracted.get(key, 0), checked.get(key, (0, 0))[1], rejected.get(key, 0),
                  checked.get(key, (0, 0))[0]) for key in extracted.keys() | checked.keys() | rejected.keys()}


@pytest.fixture(scope="module")
def rules_runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("source-rules")
    source = write_rules_source(root / "source")
    warehouse = root / "wh" / "tiering.duckdb"
    runs, balances = {}, {}
    for month in ("2024-01", "2024-02"):
        runs[month] = run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
        balances[month] = _balance(warehouse, runs[month])
    return {"warehouse": warehouse, "runs": runs, "balances": balances, "source": source}


def quarantined(warehouse: Path, run_id: str) -> list[tuple]:
    """A run's quarantine rows as (table, id, line, partition, rule, reason), sorted; every row names
    its source file, the table's."""
    rows = query(warehouse, """select source_table, source_file, source_line, landing_partition, rule, reason, record
                               from quarantine.rejected_rows where run_id = ?""", [run_id])
    files = {(table, file) for table, file, *_ in rows}
    assert files == {(table, f"{table}.csv") for table, *_ in rows}, files
    return sorted((t, json.loads(record)[TABLES[t].key[0]], line, p, rule, reason)
                  for t, _, line, p, rule, reason, record in rows)


def test_every_rule_quarantines_its_rows_with_reason_file_and_line(rules_runs):
    warehouse, runs = rules_runs["warehouse"], rules_runs["runs"]
    assert quarantined(warehouse, runs["2024-01"]["run_id"]) == sorted(ALWAYS + JANUARY_ONLY)
    assert quarantined(warehouse, runs["2024-02"]["run_id"]) == sorted(ALWAYS)
    assert {rule for *_, rule, _ in ALWAYS + JANUARY_ONLY} == RULE_CODES
    # the record keeps the row's values as in the source, never a personal free text
    records = query(warehouse, "select source_table, record from quarantine.rejected_rows where run_id = ?",
                    [runs["2024-01"]["run_id"]])
    values = {t: json.loads(r) for t, r in records if t == "orders" and json.loads(r)["order_id"] == "OX-BADTS"}
    assert values["orders"]["ordered_at"] == "2024-01-32T10:00:00" and values["orders"]["amount"] == "10.00"
    assert not [r for _, r in records if "jan@example.com" in r]


SOURCE_ROWS = {"customers": CUSTOMERS, "orders": ORDERS, "invoices": INVOICES, "payments": PAYMENTS,
               "fx_rates": FX_RATES, "tier_overrides": TIER_OVERRIDES}


def _source_values(table: str, line: int) -> dict:
    """The row at `line` of the table's source file as its text values: the columns a record
    holds (the landed ones, less an override's free-text reason); an optional column the file
    does not have is NULL (write_rules_source writes none)."""
    spec, row = TABLES[table], SOURCE_ROWS[table][line - 2]
    return {c: None if c in spec.optional_columns else row.get(c, "")
            for c in spec.landed_columns if c != "reason"}


def test_every_record_holds_the_values_exactly_as_in_the_source(rules_runs):
    """Rows rejected by a row rule (staging) and by a rule of the month (int_*__checked) alike:
    the record is the landed text, not the typed value (no UTC timestamp, no 4-decimal amount)."""
    warehouse, runs = rules_runs["warehouse"], rules_runs["runs"]
    for month, run in runs.items():
        rows = query(warehouse, "select source_table, source_line, rule, record from quarantine.rejected_rows "
                                "where run_id = ?", [run["run_id"]])
        assert len(rows) == len(ALWAYS) + (len(JANUARY_ONLY) if month == "2024-01" else 0)
        for table, line, rule, record in rows:
            assert json.loads(record) == _source_values(table, line), (month, table, line, rule)
    records = {(t, json.loads(r)[TABLES[t].key[0]]): (rule, json.loads(r)) for t, rule, r in query(
        warehouse, "select source_table, rule, record from quarantine.rejected_rows where run_id = ?",
        [runs["2024-01"]["run_id"]])}
    # the month's rejections, by hand: the text as written, offset and trailing zeros kept
    assert records[("orders", "OX-LATE")] == ("after_month_end", {
        "order_id": "OX-LATE", "customer_id": "K9", "ordered_at": "2024-02-05T10:00:00+02:00", "status": "completed",
        "currency": "EUR", "amount": "12.50", "cost": "", "updated_at": "2024-01-20T10:00:00",
        "original_order_id": None})
    assert records[("orders", "OX-KE")][0] == records[("orders", "OX-KN")][0] == "unknown_customer"
    assert records[("orders", "OX-KN")][1]["amount"] == "40.00"
    assert records[("orders", "OX-NOFX")] == ("missing_fx_rate", {
        "order_id": "OX-NOFX", "customer_id": "K1", "ordered_at": "2024-01-12T10:00:00", "status": "completed",
        "currency": "USD", "amount": "10.00", "cost": "", "updated_at": "2024-01-12T10:00:00",
        "original_order_id": None})
    assert records[("payments", "PX-INV")] == ("unknown_invoice", {
        "payment_id": "PX-INV", "invoice_id": "NOPE", "paid_at": "2024-01-20T12:00:00", "amount": "10.00",
        "updated_at": "2024-01-20T12:00:00"})
    assert records[("invoices", "IX-LATE")][1]["amount_due"] == "10.00"
    assert records[("invoices", "IX-LATE")][1]["issued_on"] == "2024-02-10"
    # an override's free-text reason stays out (it may hold personal data), a month rule's rejection too
    assert records[("tier_overrides", "TO-KN")] == ("unknown_customer", {
        "override_id": "TO-KN", "customer_id": "KN", "tier": "B", "approver": "Boss", "valid_from": "2024-01",
        "valid_until": "", "updated_at": "2024-01-02T00:00:00"})


def test_extracted_rows_are_valid_plus_rejected_per_table_and_partition(rules_runs):
    for month, balance in rules_runs["balances"].items():
        for (table, partition), (extracted, valid, rejected, checked) in balance.items():
            assert extracted == valid + rejected == checked, (month, table, partition, balance[table, partition])
    january = rules_runs["balances"]["2024-01"]
    # by hand: orders' January partition holds lines 2-3, 5-20, 22, 25, 27 and 28-177 (171 rows), 19
    # rejected (17 always, OX-LATE and OX-KN in January);
    # `unparseable` lines 4, 23 and 26, all rejected; February's lines 21 and 24 are not read
    assert january[("orders", "2024-01")] == (171, 152, 19, 171)
    assert january[("orders", "unparseable")] == (3, 0, 3, 3)
    assert ("orders", "2024-02") not in january
    assert rules_runs["balances"]["2024-02"][("orders", "2024-02")] == (2, 2, 0, 2)
    assert rules_runs["balances"]["2024-02"][("orders", "2024-01")] == (171, 154, 17, 171)
    # customers updated 2023-01-01: KJ, KM, KU, K1899, K1..K9, KF01..KF50; KM, KU and K1899 rejected
    assert january[("customers", "2023-01")] == (63, 60, 3, 63)


def tiers(warehouse: Path) -> dict:
    return {(c, f"{m:%Y-%m}"): (float(rev), n, recency) for c, m, rev, n, recency in query(warehouse, """
        select customer_id, month, net_revenue, order_count, recency_days from marts.customer_tier_monthly""")}


def test_rows_count_from_the_month_they_fall_in_utc(rules_runs):
    by_customer = tiers(rules_runs["warehouse"])
    # K1: 25 filler orders (OF000, OF006, ..., OF144) and OX-Y's first version (its version dated
    # in year 12024 is rejected, not taken as the latest)
    assert by_customer[("K1", "2024-01")][:2] == by_customer[("K1", "2024-02")][:2] == (260.0, 26)
    # K2: OX-CONF counts from February (its third version), its two conflicting ones never
    assert by_customer[("K2", "2024-01")][:2] == (250.0, 25)
    assert by_customer[("K2", "2024-02")][:2] == (320.0, 26)
    # K3: OX-TZ was ordered on February 1 in UTC (January 31, 23:30 at -02:00): it counts from February
    assert by_customer[("K3", "2024-01")][:2] == (250.0, 25)
    assert by_customer[("K3", "2024-02")][:2] == (270.0, 26)
    # K4: OX-TZ2 on January 31 in UTC (February 1, 00:30 at +01:00): January
    assert by_customer[("K4", "2024-01")][:2] == (280.0, 26)
    # K9: OX-LATE, dated February 5, counts in February (recency: February 29 - February 5)
    assert by_customer[("K9", "2024-01")][:2] == (0.0, 0)
    assert by_customer[("K9", "2024-02")] == (12.5, 1, 24)
    # KN is a customer from February on, with its January order
    assert ("KN", "2024-01") not in by_customer
    assert by_customer[("KN", "2024-02")][:2] == (40.0, 1)
    # the rejected customers are no customers; the cp1252 name is read (personal log)
    assert not {c for c, _ in by_customer} & {"KE", "KM", "KU", "KB", "K1899", "KC", "KX"}
    assert len({c for c, m in by_customer if m == "2024-01"}) == 1 + 9 + 50


def test_a_declared_encoding_is_read_into_the_personal_log(rules_runs):
    import pyarrow.parquet as pq

    landed = [r for path in (rules_runs["warehouse"].parent / "landing" / "customers_personal").rglob("*.parquet")
              for r in pq.read_table(path).to_pylist()]
    assert [r["name"] for r in landed if r["customer_id"] == "KJ"] == ["José"]


# --- files that cannot be read as they are: a one-line reason naming the file ----------------------

def _reason_lines(err: str) -> list[str]:
    """stderr of a failed run, less the line naming its log file (tiering.console): the reason."""
    return [line for line in err.splitlines() if not line.startswith("log: ")]


def _cli_run(source: Path, warehouse: Path, capsys) -> tuple[int, str]:
    from tiering.cli import main

    code = main(["run", "--source", str(source), "--month", "2024-01", "--warehouse", str(warehouse)])
    return code, capsys.readouterr().err.strip()


def _nothing_landed(warehouse: Path) -> bool:
    root = warehouse.parent / "landing"
    return not (root / "_catalog.json").exists() and not [p for p in root.rglob("*.parquet")]


def test_a_semicolon_delimited_file_is_named_with_its_delimiter(tmp_path, capsys):
    source = write_rules_source(tmp_path / "source")
    with open(source / "orders.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    with open(source / "orders.csv", "w", newline="") as fh:
        csv.writer(fh, delimiter=";").writerows(rows)
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    code, err = _cli_run(source, warehouse, capsys)
    assert code == 1 and len(_reason_lines(err)) == 1
    assert err.endswith("orders.csv seems to be delimited by ';', not ','; export it comma-separated")
    assert _nothing_landed(warehouse)


def test_an_undeclared_encoding_names_the_line(tmp_path, capsys):
    source = write_rules_source(tmp_path / "source")
    (source / "source.yml").unlink()   # customers.csv is cp1252, now read as UTF-8
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    code, err = _cli_run(source, warehouse, capsys)
    assert code == 1 and len(_reason_lines(err)) == 1
    assert "customers.csv: line 2 is not valid utf-8 (byte 0xe9 at column 10)" in err   # "KJ","José"
    assert "declare its encoding in source.yml" in err
    assert _nothing_landed(warehouse)


def test_an_unknown_declared_encoding_fails_before_anything_is_written(tmp_path):
    source = write_rules_source(tmp_path / "source")
    (source / "source.yml").write_text("encoding:\n  customers: klingon\n")
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    with pytest.raises(SourceError, match=r"source.yml: unknown encoding 'klingon'; use a Python codec name"):
        pipeline.start_run({"month": "2024-01", "source_dir": str(source), "warehouse": str(warehouse)})
    assert not warehouse.exists()


# --- a failed landing can be retried for the same run ------------------------------------------------

def test_a_landing_retried_after_a_failure_midway_lands(tmp_path):
    source = write_rules_source(tmp_path / "source")
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    run = pipeline.start_run({"month": "2024-01", "source_dir": str(source), "warehouse": str(warehouse)})
    # orders.csv becomes unreadable: the landing fails after it compared the tables before it
    shutil.move(source / "orders.csv", tmp_path / "orders.csv")
    (source / "orders.csv").mkdir()
    with pytest.raises(SourceError, match="orders.csv: cannot be read"):
        pipeline.extract_and_land(run)
    assert _nothing_landed(warehouse)
    (source / "orders.csv").rmdir()
    shutil.move(tmp_path / "orders.csv", source / "orders.csv")
    for step in STEPS:   # the task retried: the same run id
        getattr(pipeline, step)(run)
    assert query(warehouse, "select status from audit.runs where run_id = ?", [run["run_id"]]) == [("success",)]
    assert query(warehouse, "select count(*) from marts.customer_tier_monthly where run_id = ?",
                 [run["run_id"]]) == [(1 + 9 + 50,)]
    root = warehouse.parent / "landing"
    assert sorted(p.name for p in root.iterdir() if p.name != "_tmp") == [
        "_catalog.json", "_runs", "customers", "customers_personal", "fx_rates", "invoices", "orders", "payments",
        "tier_overrides"]
    assert not any((root / "_tmp").rglob("*"))
    assert [p.name for p in (root / "_runs").iterdir()] == [f"{run['run_id']}.json"]
