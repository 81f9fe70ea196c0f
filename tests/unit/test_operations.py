"""tiering.operations: `tiering status` and which months `tiering backfill` skips, on small
hand-made warehouses (no DAG run; the real backfill is tests/e2e/test_cli_backfill.py)."""
from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from tiering import operations
from tiering.cli import main
from tiering.rules import load_rules
from tiering.warehouse import connect, ensure_schema

RUNS = [  # run_id, month, rule_version, status, input_checksum, source_fingerprint, started, message
    ("a1", "2024-01", "v1", "success", "c" * 64, "f1", "2024-05-01 10:00:00", None),
    ("b1", "2024-02", "v1", "success", "d" * 64, "f1", "2024-05-01 10:05:00", None),
    ("b2", "2024-02", "v2", "failed", None, None, "2024-05-02 09:00:00", "gate_marts: quality gate 'marts' failed"),
    ("c1", "2024-03", "v1", "running", None, None, "2024-05-02 09:10:00", None),
    ("d1", "2024-04", "v1", "abandoned", None, None, "2024-05-02 09:20:00", "killed"),
]


def _warehouse(tmp_path: Path, runs=RUNS, published=(("2024-01", "a1"), ("2024-02", "b1"))) -> Path:
    warehouse = tmp_path / "tiering.duckdb"
    con = connect(warehouse)
    ensure_schema(con)
    for run_id, month, rules, status, checksum, fingerprint, started, message in runs:
        started_at = datetime.fromisoformat(started)
        con.execute("insert into audit.runs (run_id, month, rule_version, status, input_checksum, source_fingerprint, "
                    "started_at, finished_at, message) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, date.fromisoformat(month + "-01"), rules, status, checksum, fingerprint, started_at,
                     None if status in ("running", "abandoned") else started_at, message])
    con.close()
    if published:
        copy = tmp_path / "published" / "tiering_bi.duckdb"
        copy.parent.mkdir()
        pcon = duckdb.connect(str(copy))
        pcon.execute("create schema marts")
        pcon.execute("create table marts.customer_tier_monthly (customer_id varchar, month date, run_id varchar)")
        for month, run_id in published:
            pcon.execute("insert into marts.customer_tier_monthly values ('C1', ?, ?), ('C2', ?, ?)",
                         [date.fromisoformat(month + "-01"), run_id] * 2)
        pcon.close()
    return warehouse


def test_status_table_per_month_with_open_runs(tmp_path, capsys):
    warehouse = _warehouse(tmp_path)
    assert main(["status", "--warehouse", str(warehouse)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"warehouse {warehouse}"
    assert lines[1] == f"published copy {tmp_path / 'published' / 'tiering_bi.duckdb'}: months 2024-01..2024-02"
    table = [line.split() for line in lines[3:8]]
    assert table[0] == ["month", "last", "run", "state", "last", "success", "rules", "input", "published"]
    assert table[1] == ["2024-01", "a1", "success", "a1", "v1", "c" * 12, "yes"]
    assert table[2] == ["2024-02", "b2", "failed", "b1", "v1", "d" * 12, "yes"]
    assert table[3] == ["2024-03", "c1", "running", "-", "-", "-", "no"]
    assert table[4] == ["2024-04", "d1", "abandoned", "-", "-", "-", "no"]
    assert lines[8:] == [
        "running: run c1 (month 2024-03, started 2024-05-02 09:10:00)",
        "abandoned: run d1 (month 2024-04, started 2024-05-02 09:20:00)",
        "failed: 2024-02 run b2: gate_marts: quality gate 'marts' failed"]


def test_status_json(tmp_path, capsys):
    warehouse = _warehouse(tmp_path, published=(("2024-01", "a0"),))
    assert main(["status", "--warehouse", str(warehouse), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    january, february = status["months"][:2]
    assert january == {
        "month": "2024-01", "runs": 1, "last_run_id": "a1", "last_status": "success",
        "last_started_at": "2024-05-01 10:00:00", "last_finished_at": "2024-05-01 10:00:00", "last_message": None,
        "success_run_id": "a1", "success_finished_at": "2024-05-01 10:00:00", "rule_version": "v1",
        "input_checksum": "c" * 64, "source_fingerprint": "f1",
        "published_run_ids": ["a0"], "published": False}                    # BI reads an older run of the month
    assert (february["runs"], february["last_status"], february["success_run_id"]) == (2, "failed", "b1")
    assert february["published"] is False and february["published_run_ids"] == []
    assert status["latest_published_month"] == "2024-01"
    assert [(r["run_id"], r["status"]) for r in status["open_runs"]] == [("c1", "running"), ("d1", "abandoned")]


def test_status_without_a_warehouse_is_a_one_line_error(tmp_path, capsys):
    assert main(["status", "--warehouse", str(tmp_path / "none.duckdb")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tiering: error: warehouse ") and "not found" in err and err.count("\n") == 1


def test_a_month_is_unchanged_only_with_the_same_rules_and_source(tmp_path):
    warehouse = _warehouse(tmp_path, published=())
    jan, feb, mar = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
    assert operations.unchanged_since(warehouse, jan, "v1", "f1") == "a1"
    assert operations.unchanged_since(warehouse, jan, "v2", "f1") is None          # other rules
    assert operations.unchanged_since(warehouse, jan, "v1", "f2") is None          # other source
    assert operations.unchanged_since(warehouse, feb, "v1", "f1") == "b1"          # a later failure: still b1's
    assert operations.unchanged_since(warehouse, mar, "v1", "f1") is None          # never succeeded

    def not_needed():
        raise AssertionError("the source is hashed only when the rules match")
    assert operations.unchanged_since(warehouse, jan, "v2", not_needed) is None
    assert operations.unchanged_since(tmp_path / "none.duckdb", jan, "v1", not_needed) is None


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "customers.csv").write_text("customer_id,updated_at\nC1,2024-01-01T00:00:00\n")
    (source / "orders.csv").write_text("order_id,updated_at\nO1,2024-01-02T00:00:00\n")
    return source


def test_the_source_fingerprint_is_the_landing_manifests(tmp_path):
    """The backfill hashes the source directory; finish_run records the fingerprint of what was
    landed (the manifest's source files and SHA-256): the same files give the same value."""
    from tiering.files import sha256_file

    source = _source(tmp_path)
    manifest = {"tables": {name: {"source_file": f"{name}.csv", "source_sha256": sha256_file(source / f"{name}.csv"),
                                  "landing": "delta"} for name in ("orders", "customers")}}
    before = operations.source_fingerprint(source)
    assert before == operations.manifest_fingerprint(manifest)
    (source / "orders.csv").write_text("order_id,updated_at\nO1,2024-01-03T00:00:00\n")
    assert operations.source_fingerprint(source) != before
    (source / "orders.csv").rename(source / "orders.parquet")                       # the file name counts too
    assert operations.source_fingerprint(source) != before


@pytest.fixture
def fake_months(monkeypatch):
    """run_month replaced by a stand-in that records the months asked for (no DAG run)."""
    from tiering import airflow_runner

    asked = []

    def run_month(spec):
        asked.append(spec.month_text)
        return {"month": spec.month_text, "run_id": spec.run_id, "tiers": [], "quarantined": {},
                "restatement_changes": None}
    monkeypatch.setattr(airflow_runner, "run_month", run_month)
    return asked


def test_backfill_skips_unchanged_months_and_force_reruns_them(tmp_path, fake_months, capsys):
    source = _source(tmp_path)
    version = load_rules().version
    fingerprint = operations.source_fingerprint(source)
    runs = [("a1", "2024-01", version, "success", "c" * 64, fingerprint, "2024-05-01 10:00:00", None),
            ("b1", "2024-02", "older-rules", "success", "d" * 64, fingerprint, "2024-05-01 10:05:00", None)]
    warehouse = _warehouse(tmp_path, runs=runs, published=())
    command = ["backfill", "--source", str(source), "--start", "2024-01", "--end", "2024-03",
               "--warehouse", str(warehouse)]
    assert main(command) == 0
    assert fake_months == ["2024-02", "2024-03"]
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "[1/3] 2024-01 skipped: unchanged since run a1 (--force reruns it)"
    assert out[2].startswith("[2/3] 2024-02 run 202402-") and out[2].endswith(" started")
    assert out[-1].startswith("done: 2 of 3 month(s) run in ")
    fake_months.clear()
    assert main([*command, "--force"]) == 0
    assert fake_months == ["2024-01", "2024-02", "2024-03"]
