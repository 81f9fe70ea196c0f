"""What the source may hold and what a run makes of it, through the pipeline's steps and the
warehouse's tables: impossible timestamps, dates before 1900 and business dates after the month end
are quarantined with their reason (a row dated in a later month counts from that month on), in
both landing modes; CSV files with quoted headers, another delimiter or another encoding; and a
landing that failed half-way can be retried for the same run.

Source (CSV; customers.csv in cp1252, declared in source.yml; customers.csv and orders.csv with
a quoted header):
  customers  K1..K9 (2023), KJ "José", KE created at 'epoch' (impossible_timestamp)
  orders     50 valid January orders of K1..K6 (10.00 each), and
             OX-INF / OX-NINF / OX-EPOCH  ordered_at 'infinity' / '-infinity' / 'epoch'
             OX-UPD    updated_at 'infinity': never before any cutoff, extracted and quarantined every month
             OX-1899   ordered 1899-12-31                          date_before_1900
             OX-LATE   K9, ordered 2024-03-05, updated in January: after_month_end in January, counts in March
             OX-2030   K7, ordered 2030-01-01, updated in January: after_month_end (no negative recency)
             OX-KE     for KE                                      unknown_customer
  invoices   10 valid (K1), IX-LATE issued 2024-02-10 (updated in January), IX-1899 issued 1899-06-01
  payments   10 valid, PX-LATE paid 2024-03-02 (updated 2024-01-31)
January and March run in both landing modes (March is a delta on January incrementally).
"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, order, write_source
from tests.fixtures.warehouse import query
from tiering import pipeline
from tiering.source import TABLES, SourceError
from tiering.steps import STEPS

JANUARY = "2024-01-10T10:00:00"

CUSTOMERS = [*(customer(f"K{i}") for i in range(1, 10)), customer("KJ", name="José"),
             customer("KE", created="epoch", updated="2023-06-01T00:00:00")]
ORDERS = [
    *(order(f"OF{i:02d}", f"K{i % 6 + 1}", "10.00", JANUARY) for i in range(50)),
    order("OX-INF", "K1", "10.00", "infinity", updated="2024-01-15T10:00:00"),
    order("OX-NINF", "K1", "10.00", "-infinity", updated="2024-01-15T10:00:00"),
    order("OX-EPOCH", "K1", "10.00", "epoch", updated="2024-01-15T10:00:00"),
    order("OX-UPD", "K1", "10.00", "2024-01-12T10:00:00", updated="infinity"),
    order("OX-1899", "K1", "10.00", "1899-12-31T10:00:00", updated="2024-01-15T10:00:00"),
    order("OX-LATE", "K9", "50.00", "2024-03-05T10:00:00", updated="2024-01-20T10:00:00"),
    order("OX-2030", "K7", "500.00", "2030-01-01T00:00:00", updated="2024-01-20T10:00:00"),
    order("OX-KE", "KE", "10.00", JANUARY),
]
INVOICES = [
    *({"invoice_id": f"F{i}", "order_id": f"OF{i:02d}", "customer_id": "K1", "issued_on": "2024-01-05",
       "due_on": "2024-02-05", "amount_due": "10.00", "currency": "EUR", "updated_at": "2024-01-05T00:00:00"}
      for i in range(10)),
    {"invoice_id": "IX-LATE", "customer_id": "K1", "issued_on": "2024-02-10", "due_on": "2024-03-10",
     "amount_due": "10.00", "currency": "EUR", "updated_at": "2024-01-20T00:00:00"},
    {"invoice_id": "IX-1899", "customer_id": "K1", "issued_on": "1899-06-01", "due_on": "2024-03-10",
     "amount_due": "10.00", "currency": "EUR", "updated_at": "2024-01-20T00:00:00"},
]
PAYMENTS = [
    *({"payment_id": f"PF{i}", "invoice_id": f"F{i}", "paid_at": "2024-01-20T12:00:00", "amount": "10.00",
       "updated_at": "2024-01-20T12:00:00"} for i in range(10)),
    {"payment_id": "PX-LATE", "invoice_id": "F0", "paid_at": "2024-03-02T12:00:00", "amount": "1.00",
     "updated_at": "2024-01-31T12:00:00"},
]

QUARANTINED_IN_JANUARY = {
    ("customers", "KE"): "impossible_timestamp",
    ("orders", "OX-INF"): "impossible_timestamp",
    ("orders", "OX-NINF"): "impossible_timestamp",
    ("orders", "OX-EPOCH"): "impossible_timestamp",
    ("orders", "OX-UPD"): "impossible_timestamp",
    ("orders", "OX-1899"): "date_before_1900",
    ("orders", "OX-LATE"): "after_month_end",
    ("orders", "OX-2030"): "after_month_end",
    ("orders", "OX-KE"): "unknown_customer",
    ("invoices", "IX-LATE"): "after_month_end",
    ("invoices", "IX-1899"): "date_before_1900",
    ("payments", "PX-LATE"): "after_month_end",
}
# in March, the rows dated in February or March are valid
QUARANTINED_IN_MARCH = {k: v for k, v in QUARANTINED_IN_JANUARY.items()
                        if k not in {("orders", "OX-LATE"), ("invoices", "IX-LATE"), ("payments", "PX-LATE")}}

def _reason_lines(err: str) -> list[str]:
    """stderr of a failed run, less the line naming its log file (tiering.console): the reason."""
    return [line for line in err.splitlines() if not line.startswith("log: ")]



def write_rules_source(directory: Path) -> Path:
    write_source(directory, orders=ORDERS, invoices=INVOICES, payments=PAYMENTS)
    # orders: a quoted header line (valid CSV; its amounts once made the columns numbers)
    lines = (directory / "orders.csv").read_text().splitlines(keepends=True)
    header = ",".join(f'"{c}"' for c in TABLES["orders"].columns)
    (directory / "orders.csv").write_text(header + "\r\n" + "".join(lines[1:]))
    # customers: a quoted header (valid CSV) and cp1252 text, declared in source.yml
    with open(directory / "customers.csv", "w", newline="", encoding="cp1252") as fh:
        writer = csv.DictWriter(fh, fieldnames=TABLES["customers"].columns, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows({c: row.get(c, "") for c in TABLES["customers"].columns} for row in CUSTOMERS)
    (directory / "source.yml").write_text("encoding:\n  customers: cp1252\n")
    return directory


def _run(source: Path, warehouse: Path, month: str, mode: str) -> dict:
    previous = os.environ.get("TIERING_LANDING")
    os.environ["TIERING_LANDING"] = mode
    try:
        return run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
    finally:
        if previous is None:
            del os.environ["TIERING_LANDING"]
        else:
            os.environ["TIERING_LANDING"] = previous


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("source-rules")
    source = write_rules_source(root / "source")
    out = {}
    for mode in ("incremental", "full"):
        warehouse = root / mode / "tiering.duckdb"
        runs = {month: _run(source, warehouse, month, mode) for month in ("2024-01", "2024-03")}
        out[mode] = {"warehouse": warehouse, "runs": runs}
    return out


def quarantined(warehouse: Path, run_id: str) -> dict:
    ids = {name: TABLES[name].key[0] for name in TABLES}
    rows = query(warehouse, "select source_table, record, rule, reason from quarantine.rejected_rows where run_id = ?",
                 [run_id])
    import json

    return {(table, json.loads(record)[ids[table]]): (rule, reason) for table, record, rule, reason in rows}


def tiers(warehouse: Path) -> list[tuple]:
    return query(warehouse, """select customer_id, month, net_revenue, order_count, recency_days, final_tier
                               from marts.customer_tier_monthly order by all""")


def test_impossible_and_out_of_month_dates_are_quarantined_with_their_reason(both_modes):
    warehouse, runs = both_modes["incremental"]["warehouse"], both_modes["incremental"]["runs"]
    january = quarantined(warehouse, runs["2024-01"]["run_id"])
    assert {k: rule for k, (rule, _) in january.items()} == QUARANTINED_IN_JANUARY
    assert january[("orders", "OX-INF")][1] == \
        "special value 'infinity' in 'ordered_at' is no real moment (expected ISO 8601)"
    assert january[("orders", "OX-UPD")][1].startswith("special value 'infinity' in 'updated_at'")
    assert january[("customers", "KE")][1].startswith("special value 'epoch' in 'created_at'")
    assert january[("orders", "OX-1899")][1] == "ordered_at 1899-12-31T10:00:00 is before 1900-01-01"
    assert january[("orders", "OX-LATE")][1].startswith("ordered_at 2024-03-05T10:00:00 is after the end of the month")
    march = quarantined(warehouse, runs["2024-03"]["run_id"])
    assert {k: rule for k, (rule, _) in march.items()} == QUARANTINED_IN_MARCH


def test_a_row_dated_in_a_later_month_counts_from_that_month_on(both_modes):
    by_customer = {(c, f"{m:%Y-%m}"): (float(rev), n, recency) for c, m, rev, n, recency, _ in
                   tiers(both_modes["incremental"]["warehouse"])}
    assert by_customer[("K9", "2024-01")][:2] == (0.0, 0)
    assert by_customer[("K9", "2024-03")] == (50.0, 1, 26)   # ordered 2024-03-05, month end 2024-03-31
    # an order dated 2030 counts in no 2024 month: no negative recency, no revenue
    assert by_customer[("K7", "2024-01")][:2] == by_customer[("K7", "2024-03")][:2] == (0.0, 0)
    assert min(r for *_, r in by_customer.values() if r is not None) >= 0
    # the orders with impossible dates count nowhere: K1's January revenue is its valid orders only
    assert by_customer[("K1", "2024-01")][:2] == (90.0, 9)


def test_the_quarantine_and_the_marts_equal_the_full_landing(both_modes):
    incremental, full = both_modes["incremental"], both_modes["full"]
    assert tiers(incremental["warehouse"]) == tiers(full["warehouse"])
    for month in ("2024-01", "2024-03"):
        assert quarantined(incremental["warehouse"], incremental["runs"][month]["run_id"]) == \
            quarantined(full["warehouse"], full["runs"][month]["run_id"]), month


def test_a_quoted_header_and_a_declared_encoding_are_read(both_modes):
    warehouse = both_modes["incremental"]["warehouse"]
    assert query(warehouse, "select name from raw.customers where customer_id = 'KJ'") == [("José",)]
    assert query(warehouse, "select count(distinct customer_id) from marts.customer_tier_monthly") == [(10,)]


# --- files that cannot be read as they are: a one-line reason naming the file ----------------------

def _cli_run(source: Path, warehouse: Path, capsys) -> tuple[int, str]:
    from tiering.cli import main

    code = main(["run", "--source", str(source), "--month", "2024-01", "--warehouse", str(warehouse)])
    return code, capsys.readouterr().err.strip()


def test_a_semicolon_delimited_file_is_named_with_its_delimiter(tmp_path, capsys):
    source = write_rules_source(tmp_path / "source")
    with open(source / "orders.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    with open(source / "orders.csv", "w", newline="") as fh:
        csv.writer(fh, delimiter=";").writerows(rows)
    code, err = _cli_run(source, tmp_path / "wh" / "tiering.duckdb", capsys)
    assert code == 1 and len(_reason_lines(err)) == 1
    assert err.endswith("orders.csv seems to be delimited by ';', not ','; export it comma-separated")


def test_an_undeclared_encoding_names_the_line(tmp_path, capsys):
    source = write_rules_source(tmp_path / "source")
    (source / "source.yml").unlink()   # customers.csv is cp1252, now read as UTF-8
    code, err = _cli_run(source, tmp_path / "wh" / "tiering.duckdb", capsys)
    assert code == 1 and len(_reason_lines(err)) == 1
    line = 1 + [c["customer_id"] for c in CUSTOMERS].index("KJ") + 1
    assert f"customers.csv: line {line} is not valid utf-8 (byte 0xe9" in err
    assert "declare its encoding in source.yml" in err


# --- a failed landing can be retried for the same run ------------------------------------------------

def test_a_landing_retried_after_a_failure_midway_lands(tmp_path):
    source = write_rules_source(tmp_path / "source")
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    run = pipeline.start_run({"month": "2024-01", "source_dir": str(source), "warehouse": str(warehouse)})
    # orders.csv becomes unreadable: the landing fails after it landed the tables before it
    shutil.move(source / "orders.csv", tmp_path / "orders.csv")
    (source / "orders.csv").mkdir()
    with pytest.raises(SourceError, match="orders.csv: cannot be read"):
        pipeline.extract_and_land(run)
    (source / "orders.csv").rmdir()
    shutil.move(tmp_path / "orders.csv", source / "orders.csv")
    for step in STEPS:   # the task retried: the same run id
        getattr(pipeline, step)(run)
    assert query(warehouse, "select status from audit.runs where run_id = ?", [run["run_id"]]) == [("success",)]
    assert query(warehouse, "select count(*) from marts.customer_tier_monthly where run_id = ?",
                 [run["run_id"]]) == [(10,)]
    assert sorted(p.name for p in warehouse.parent.joinpath("landing").iterdir()) == [run["run_id"]]
