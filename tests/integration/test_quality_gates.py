"""The quality gates inside the pipeline (steps run without Airflow) on a small generated source
with corrupted inputs: each kind of problem ends either in quarantine (row-level, with its reason)
or in a failed run (batch-level: SourceError or QualityGateError naming the expectation), and
for every loaded batch raw + quarantine = extracted.

The previous month (2024-03) is run once per module; each test copies that warehouse and runs
2024-04 on its own copy of the source.
"""
from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path

import pytest

from tests.fixtures.warehouse import query
from tiering import pipeline, quality
from tiering.errors import QualityGateError
from tiering.publish import published_path
from tiering.rules import Rules
from tiering.source import SourceError
from tiering.steps import STEPS

PREVIOUS, MONTH = "2024-03", "2024-04"


def run_month(source: Path, warehouse: Path, month: str = MONTH) -> dict:
    """Start a run and execute its steps; the run dict is attached to a raised exception."""
    run = pipeline.start_run({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
    try:
        for step in STEPS:
            getattr(pipeline, step)(run)
    except Exception as exc:
        exc.run = run
        raise
    return run


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def append_rows(path: Path, *rows: dict) -> None:
    columns, existing = read_csv(path)
    write_csv(path, columns, existing + [{c: row.get(c, "") for c in columns} for row in rows])


def assert_raw_plus_quarantine_is_extracted(warehouse: Path, run_id: str) -> None:
    batches = query(warehouse, """
        select b.source_table, b.extracted_rows, b.loaded_rows, b.quarantined_rows,
               (select count(*) from raw.batch_members r
                where r.batch_id = b.run_id and r.source_table = b.source_table),
               (select count(*) from quarantine.rejected_rows q where q.run_id = b.run_id
                                                              and q.source_table = b.source_table)
        from audit.load_batches b where b.run_id = ?""", [run_id])
    assert batches, f"no load batches for {run_id}"
    for table, extracted, loaded, quarantined, raw_rows, quarantine_rows in batches:
        assert loaded + quarantined == extracted, table
        assert (raw_rows, quarantine_rows) == (loaded, quarantined), table


def dq_result(warehouse: Path, run_id: str, check_id: str) -> dict:
    rows = query(warehouse, "select severity, success, observed_value, unexpected_count from audit.dq_results "
                            "where run_id = ? and expectation like ?", [run_id, f"{check_id}: %"])
    assert len(rows) == 1, f"{check_id}: {rows}"
    return dict(zip(("severity", "success", "observed_value", "unexpected_count"), rows[0], strict=True))


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def previous_month(demo_source, tmp_path_factory) -> Path:
    """A warehouse (folder) holding the successful, published run of 2024-03 on the demo source."""
    folder = tmp_path_factory.mktemp("previous-month")
    run_month(demo_source, folder / "tiering.duckdb", PREVIOUS)
    return folder


@pytest.fixture
def warehouse(previous_month, tmp_path) -> Path:
    folder = tmp_path / "wh"
    shutil.copytree(previous_month, folder)
    return folder / "tiering.duckdb"


@pytest.fixture
def source(demo_source, tmp_path) -> Path:
    folder = tmp_path / "source"
    shutil.copytree(demo_source, folder)
    return folder


INJECTED = {
    # order_id -> (quarantine rule, landed expectation that records the evidence)
    "OQ-TEXT": ("bad_amount", "landed.orders.valid_amount_amount"),
    "OQ-DUP": ("conflicting_versions", "landed.orders.valid_unique_version"),
    "OQ-NOCUST": ("unknown_customer", None),
    "OQ-DATE": ("bad_timestamp", "landed.orders.valid_timestamp_ordered_at"),
    "OQ-CUR": ("unknown_currency", "landed.orders.valid_currency"),
}


@pytest.fixture(scope="module")
def corrupted_run(demo_source, previous_month, tmp_path_factory) -> dict:
    """One run of 2024-04 on a source with one injected bad row of each row-level kind."""
    root = tmp_path_factory.mktemp("corrupted")
    src = root / "source"
    shutil.copytree(demo_source, src)
    shutil.copytree(previous_month, root / "wh")
    _, customers = read_csv(src / "customers.csv")
    _, invoices = read_csv(src / "invoices.csv")
    cid, iid = customers[0]["customer_id"], invoices[0]
    stamp = "2024-04-10T10:00:00"
    base = {"customer_id": cid, "ordered_at": stamp, "status": "completed", "currency": "EUR", "amount": "10.00",
            "updated_at": stamp}
    append_rows(src / "orders.csv",
                {**base, "order_id": "OQ-TEXT", "amount": "twelve"},
                {**base, "order_id": "OQ-DUP", "amount": "10.00"},
                {**base, "order_id": "OQ-DUP", "amount": "20.00"},
                {**base, "order_id": "OQ-NOCUST", "customer_id": "CQ-NOPE"},
                {**base, "order_id": "OQ-DATE", "ordered_at": "10/04/2024"},
                {**base, "order_id": "OQ-CUR", "currency": "ZZZ"})
    append_rows(src / "invoices.csv",
                {**iid, "invoice_id": "IQ-DATE", "issued_on": "2024/04/10", "due_on": "2024-05-10",
                 "updated_at": stamp})
    append_rows(src / "payments.csv",
                {"payment_id": "PQ-NOINV", "invoice_id": "IQ-NOPE", "paid_at": stamp, "amount": "5.00",
                 "updated_at": stamp})
    run = run_month(src, root / "wh" / "tiering.duckdb")
    return {"run": run, "warehouse": root / "wh" / "tiering.duckdb"}


def quarantined(corrupted_run: dict, table: str, id_column: str, id_value: str) -> list[tuple]:
    return query(corrupted_run["warehouse"], f"""
        select rule, reason from quarantine.rejected_rows
        where run_id = ? and source_table = ? and record->>'{id_column}' = ? order by source_line""",
                 [corrupted_run["run"]["run_id"], table, id_value])


# --- row-level problems: quarantined with a reason, the run succeeds ---------------------------------

def test_the_corrupted_run_succeeds_and_raw_plus_quarantine_is_extracted(corrupted_run):
    run_id, warehouse = corrupted_run["run"]["run_id"], corrupted_run["warehouse"]
    assert query(warehouse, "select status from audit.runs where run_id = ?", [run_id]) == [("success",)]
    assert_raw_plus_quarantine_is_extracted(warehouse, run_id)
    gates = dict(query(warehouse, "select gate, count(*) from audit.dq_results where run_id = ? group by gate",
                       [run_id]))
    assert set(gates) == {"landed", "staging", "marts"}
    # the previous month exists, so the batch-level comparisons ran (and passed)
    assert dq_result(warehouse, run_id, "landed.orders.row_count_drop")["success"] is True
    assert dq_result(warehouse, run_id, "marts.previous_month_customers.still_present")["success"] is True
    assert (Path(warehouse).parent / "gx_docs" / run_id / "index.html").is_file()


@pytest.mark.parametrize("order_id", ["OQ-TEXT", "OQ-NOCUST", "OQ-DATE", "OQ-CUR"])
def test_a_bad_order_row_is_quarantined_with_its_reason_and_recorded_as_a_warning(corrupted_run, order_id):
    rule, evidence = INJECTED[order_id]
    rows = quarantined(corrupted_run, "orders", "order_id", order_id)
    assert [r[0] for r in rows] == [rule], rows
    if evidence:
        result = dq_result(corrupted_run["warehouse"], corrupted_run["run"]["run_id"], evidence)
        assert result["severity"] == "warn" and result["unexpected_count"] >= 1


def test_a_text_amount_is_quarantined(corrupted_run):
    (rule, reason), = quarantined(corrupted_run, "orders", "order_id", "OQ-TEXT")
    assert rule == "bad_amount" and "twelve" in reason


def test_a_duplicate_order_id_with_different_amounts_and_the_same_updated_at_is_quarantined(corrupted_run):
    rows = quarantined(corrupted_run, "orders", "order_id", "OQ-DUP")
    assert [r[0] for r in rows] == ["conflicting_versions", "conflicting_versions"]
    assert query(corrupted_run["warehouse"], "select count(*) from staging.stg_raw__orders where order_id = 'OQ-DUP'") \
        == [(0,)]


def test_a_payment_for_an_unknown_invoice_is_quarantined(corrupted_run):
    (rule, reason), = quarantined(corrupted_run, "payments", "payment_id", "PQ-NOINV")
    assert rule == "unknown_invoice" and "IQ-NOPE" in reason
    result = dq_result(corrupted_run["warehouse"], corrupted_run["run"]["run_id"],
                       "staging.payments.invoice_id_in_invoices")
    assert result["success"] is True and result["severity"] == "error"


def test_an_order_for_an_unknown_customer_is_quarantined(corrupted_run):
    (rule, reason), = quarantined(corrupted_run, "orders", "order_id", "OQ-NOCUST")
    assert rule == "unknown_customer" and "CQ-NOPE" in reason
    assert dq_result(corrupted_run["warehouse"], corrupted_run["run"]["run_id"],
                     "staging.orders.customer_id_in_customers")["success"] is True


def test_dates_in_the_wrong_format_are_quarantined(corrupted_run):
    assert [r[0] for r in quarantined(corrupted_run, "orders", "order_id", "OQ-DATE")] == ["bad_timestamp"]
    assert [r[0] for r in quarantined(corrupted_run, "invoices", "invoice_id", "IQ-DATE")] == ["bad_date"]
    result = dq_result(corrupted_run["warehouse"], corrupted_run["run"]["run_id"],
                       "landed.invoices.valid_date_issued_on")
    assert result["severity"] == "warn" and result["unexpected_count"] == 1 and "2024/04/10" in result["observed_value"]


def test_an_unknown_currency_is_quarantined(corrupted_run):
    (rule, reason), = quarantined(corrupted_run, "orders", "order_id", "OQ-CUR")
    assert rule == "unknown_currency" and "ZZZ" in reason


# --- batch-level problems: the run fails, naming the problem -------------------------------------------

def test_a_missing_column_in_orders_fails_the_run_at_extraction(source, warehouse):
    columns, rows = read_csv(source / "orders.csv")
    write_csv(source / "orders.csv", [c for c in columns if c != "currency"],
              [{k: v for k, v in r.items() if k != "currency"} for r in rows])
    with pytest.raises(SourceError, match=r"orders\.csv: missing column\(s\) currency") as err:
        run_month(source, warehouse)
    assert query(warehouse, "select count(*) from audit.load_batches where run_id = ?",
                 [err.value.run["run_id"]]) == [(0,)]


def test_a_renamed_file_fails_the_run_before_anything_is_written(source, warehouse):
    (source / "orders.csv").rename(source / "order.csv")
    runs_before = query(warehouse, "select count(*) from audit.runs")
    with pytest.raises(SourceError, match=r"required file orders\.csv .* is missing"):
        run_month(source, warehouse)
    assert query(warehouse, "select count(*) from audit.runs") == runs_before


def test_a_month_with_half_the_usual_rows_fails_the_landed_gate(source, warehouse):
    columns, rows = read_csv(source / "orders.csv")
    write_csv(source / "orders.csv", columns, rows[::4])   # the extract shrinks to about a third
    with pytest.raises(QualityGateError) as err:
        run_month(source, warehouse)
    message = str(err.value)
    assert message.startswith(f"quality gate 'landed' failed for {MONTH}") and "\n" not in message
    assert "landed.orders.row_count_drop: expect_column_max_to_be_between(column=rows, min_value=" in message
    run_id = err.value.run["run_id"]
    assert dq_result(warehouse, run_id, "landed.orders.row_count_drop")["success"] is False
    assert query(warehouse, "select count(*) from audit.load_batches where run_id = ?", [run_id]) == [(0,)]
    assert_raw_plus_quarantine_is_extracted(warehouse, query(
        warehouse, "select run_id from audit.runs where status = 'success'")[0][0])


def test_a_file_with_every_date_in_the_wrong_format_fails_the_staging_gate(source, warehouse):
    columns, rows = read_csv(source / "orders.csv")
    for row in rows:   # 2024-04-10T10:00:00 -> 10/04/2024 10:00:00 (the demo's few dirty dates stay as they are)
        if "T" not in row["ordered_at"]:
            continue
        day, time = row["ordered_at"].split("T")
        y, m, d = day.split("-")
        row["ordered_at"] = f"{d}/{m}/{y} {time}"
    write_csv(source / "orders.csv", columns, rows)
    with pytest.raises(QualityGateError) as err:
        run_month(source, warehouse)
    assert str(err.value).startswith(f"quality gate 'staging' failed for {MONTH}")
    assert "staging.load_batches.quarantined_share_orders" in str(err.value)
    run_id = err.value.run["run_id"]
    assert_raw_plus_quarantine_is_extracted(warehouse, run_id)
    assert query(warehouse, "select count(distinct rule) from quarantine.rejected_rows where run_id = ? "
                            "and source_table = 'orders' and rule = 'bad_timestamp'", [run_id]) == [(1,)]
    # the landed gate only warned: row-level problems are the load step's to quarantine
    assert dq_result(warehouse, run_id, "landed.orders.valid_timestamp_ordered_at")["severity"] == "warn"


def test_a_failing_marts_gate_leaves_the_published_copy_unchanged(source, warehouse, monkeypatch, capfd):
    published = published_path(warehouse)
    before = published.read_bytes()
    real = quality.load_rules

    def strict_rules(path=None) -> Rules:
        rules = real(path)
        data = copy.deepcopy(rules.data)
        data["value"]["pareto"]["a_share"] = 0.99
        return Rules(data=data, version=rules.version, path=rules.path)

    monkeypatch.setattr(quality, "load_rules", strict_rules)   # only the gate sees the stricter share
    with pytest.raises(QualityGateError) as err:
        run_month(source, warehouse)
    message = str(err.value)
    assert message.startswith(f"quality gate 'marts' failed for {MONTH}")
    assert "marts.customer_tier_monthly.a_customers_value_share" in message and "observed 0." in message
    assert published.read_bytes() == before
    run_id = err.value.run["run_id"]
    assert query(warehouse, "select status from audit.runs where run_id = ?", [run_id]) == [("running",)]
    assert_raw_plus_quarantine_is_extracted(warehouse, run_id)
    output = capfd.readouterr()
    assert "Calculating Metrics" not in output.out + output.err
