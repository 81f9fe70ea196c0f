"""The quality gates inside the pipeline (steps run without Airflow) on a small generated source
with corrupted inputs: each kind of problem ends either in quarantine (row-level, with its reason)
or in a failed run (batch-level: SourceError, SourceChangedError or QualityGateError naming the
expectation), and for every run that typed its rows: rows read = valid + quarantined.

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
from tiering.landing import CATALOG, SourceChangedError, load_manifest
from tiering.publish import published_path
from tiering.rules import Rules
from tiering.settings import landing_root
from tiering.source import TABLES, SourceError
from tiering.steps import STEPS

PREVIOUS, MONTH = "2024-03", "2024-04"


def run_month(source: Path, warehouse: Path, month: str = MONTH, restate: bool = False) -> dict:
    """Start a run and execute its steps; the run dict is attached to a raised exception."""
    run = pipeline.start_run({"month": month, "source_dir": str(source), "warehouse": str(warehouse),
                              "restate": restate})
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


# the view of each table's rows as of the month, valid or rejected (the month's rules applied)
CHECKED = {"customers": "staging.stg_landing__customers", "fx_rates": "staging.stg_landing__fx_rates",
           **{t: f"intermediate.int_{t}__checked" for t in ("orders", "invoices", "payments", "tier_overrides")}}


def assert_read_is_valid_plus_quarantined(warehouse: Path, run_id: str) -> None:
    """Every row the run read (its landing manifest) is typed once, and is either valid or in the run's
    quarantine; the as-of tables hold valid rows only. (For the latest run: the int_*__checked views are
    compiled for the month dbt built last.)"""
    (manifest_path,), = query(warehouse, "select landing_dir from audit.runs where run_id = ?", [run_id])
    manifest = load_manifest(manifest_path)     # (its files absolute, as landing_file)
    for table in TABLES:
        read = manifest["tables"][table]
        files = [v["file"] for v in read["partitions"].values()]
        typed = query(warehouse, f"select count(*) from staging.stg_landing__{table} "
                                 f"where list_contains(?, landing_file)", [files])[0][0]
        assert typed == read["rows"], table
        if table in ("customers", "fx_rates"):
            in_reach = f"where landing_partition <= '{manifest['month']}' or landing_partition = 'unparseable'"
        else:
            in_reach = ""
        rows, rejected = query(warehouse, f"select count(*), count(*) filter (where rejection_rule is not null) "
                                          f"from {CHECKED[table]} {in_reach}")[0]
        quarantined = query(warehouse, "select count(*) from quarantine.rejected_rows where run_id = ? "
                                       "and source_table = ?", [run_id, table])[0][0]
        assert (rows, rejected) == (read["rows"], quarantined), table


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

def test_the_corrupted_run_succeeds_and_every_row_read_is_valid_or_quarantined(corrupted_run):
    run_id, warehouse = corrupted_run["run"]["run_id"], corrupted_run["warehouse"]
    assert query(warehouse, "select status from audit.runs where run_id = ?", [run_id]) == [("success",)]
    assert_read_is_valid_plus_quarantined(warehouse, run_id)
    assert dq_result(warehouse, run_id, "staging.rows_read.rows_accounted_for")["success"] is True
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
    assert query(corrupted_run["warehouse"],
                 "select count(*) from intermediate.int_orders__as_of where order_id = 'OQ-DUP'") == [(0,)]


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

def change_log(warehouse: Path) -> str:
    """The landing catalog: what the change log holds."""
    return (landing_root(warehouse) / CATALOG).read_text()


def test_a_missing_column_in_orders_fails_the_run_at_extraction(source, warehouse):
    columns, rows = read_csv(source / "orders.csv")
    write_csv(source / "orders.csv", [c for c in columns if c != "currency"],
              [{k: v for k, v in r.items() if k != "currency"} for r in rows])
    before = change_log(warehouse)
    with pytest.raises(SourceError, match=r"orders\.csv: missing column\(s\) currency") as err:
        run_month(source, warehouse)
    run_id = err.value.run["run_id"]
    assert change_log(warehouse) == before                               # nothing landed
    assert not (landing_root(warehouse) / "_runs" / f"{run_id}.json").exists()
    assert query(warehouse, "select count(*) from quarantine.rejected_rows where run_id = ?", [run_id]) == [(0,)]


def test_a_renamed_file_fails_the_run_before_anything_is_written(source, warehouse):
    (source / "orders.csv").rename(source / "order.csv")
    runs_before = query(warehouse, "select count(*) from audit.runs")
    with pytest.raises(SourceError, match=r"required file orders\.csv .* is missing"):
        run_month(source, warehouse)
    assert query(warehouse, "select count(*) from audit.runs") == runs_before


def test_a_month_with_half_the_usual_rows_fails_the_landed_gate(source, warehouse):
    columns, rows = read_csv(source / "orders.csv")
    write_csv(source / "orders.csv", columns, rows[::4])   # the extract shrinks to about a quarter
    published = published_path(warehouse).read_bytes()
    before = change_log(warehouse)
    # the rows of months already landed are gone: a plain run refuses the changed history, writing nothing
    with pytest.raises(SourceChangedError, match=r"orders: \d+ month\(s\) changed \(2024-01, "):
        run_month(source, warehouse)
    assert change_log(warehouse) == before
    # landed as a restatement, the month reads far fewer rows than the previous month's run read
    with pytest.raises(QualityGateError) as err:
        run_month(source, warehouse, restate=True)
    message = str(err.value)
    assert message.startswith(f"quality gate 'landed' failed for {MONTH}") and "\n" not in message
    assert "landed.orders.row_count_drop: expect_column_max_to_be_between(column=rows, min_value=" in message
    run_id = err.value.run["run_id"]
    assert dq_result(warehouse, run_id, "landed.orders.row_count_drop")["success"] is False
    # the run stopped before dbt and nothing was published
    assert query(warehouse, "select count(*) from quarantine.rejected_rows where run_id = ?", [run_id]) == [(0,)]
    assert query(warehouse, "select status from audit.runs where run_id = ?", [run_id]) == [("running",)]
    assert published_path(warehouse).read_bytes() == published
    assert_read_is_valid_plus_quarantined(warehouse, query(
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
    published = published_path(warehouse).read_bytes()
    with pytest.raises(SourceChangedError):          # every landed month changed: a restatement
        run_month(source, warehouse)
    with pytest.raises(QualityGateError) as err:
        run_month(source, warehouse, restate=True)
    assert str(err.value).startswith(f"quality gate 'staging' failed for {MONTH}")
    assert "staging.rows_read.quarantined_share_orders" in str(err.value)
    run_id = err.value.run["run_id"]
    assert_read_is_valid_plus_quarantined(warehouse, run_id)
    assert query(warehouse, "select count(distinct rule) from quarantine.rejected_rows where run_id = ? "
                            "and source_table = 'orders' and rule = 'bad_timestamp'", [run_id]) == [(1,)]
    # the landed gate only warned: row-level problems are the staging models' to reject
    landed = dq_result(warehouse, run_id, "landed.orders.valid_timestamp_ordered_at")
    assert (landed["severity"], landed["success"]) == ("warn", False)
    assert published_path(warehouse).read_bytes() == published


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
    assert_read_is_valid_plus_quarantined(warehouse, run_id)
    output = capfd.readouterr()
    assert "Calculating Metrics" not in output.out + output.err
