"""Retention (`tiering cleanup`, tiering.retention): superseded landed versions go only when no
month's last successful run (nor a running run) reads them and they were superseded long enough;
GX docs and logs by age; nothing without a retention set. The landing is real (tiering.landing on a
hand-made source, restated), the runs are rows of audit.runs pointing at the landing's manifests."""
from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures.sources import customer, order, write_source
from tiering import landing
from tiering.cli import main
from tiering.errors import TieringError
from tiering.personal import personal_file
from tiering.retention import ENV, Retention, cleanup, cleanup_after_run, format_cleanup, log_dirs
from tiering.runspec import RunSpec, parse_month
from tiering.settings import landing_root
from tiering.warehouse import connect, ensure_schema

LATER = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_retention_env(monkeypatch, tmp_path):
    for env in ENV.values():
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt-logs"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", raising=False)


def _source(directory: Path, region: str) -> Path:
    return write_source(directory, customers=[customer("C1", region=region, updated="2024-01-05T10:00:00"),
                                              customer("C2", updated="2024-02-05T10:00:00")],
                        orders=[order("O1", "C1", "10.00")])


class Runs:
    """Runs of a warehouse: landed for real, recorded in audit.runs as the pipeline would."""

    def __init__(self, warehouse: Path, source: Path):
        self.warehouse, self.source, self.n = warehouse, source, 0
        con = connect(warehouse)
        ensure_schema(con)
        con.close()

    def run(self, month: str, status: str = "success", restate: bool = False) -> str:
        self.n += 1
        spec = RunSpec(month=parse_month(month), run_id=f"{month.replace('-', '')}-run{self.n}",
                       source_dir=self.source, warehouse=self.warehouse, restate=restate)
        landing.extract_and_land(spec)
        con = connect(self.warehouse)
        con.execute("insert into audit.runs (run_id, month, status, landing_dir, finished_at) values (?, ?, ?, ?, ?)",
                    [spec.run_id, spec.month, status, str(spec.landing_manifest),
                     datetime(2024, 6, 1) + timedelta(hours=self.n)])
        con.close()
        return spec.run_id


@pytest.fixture
def restated(tmp_path):
    """2024-01 and 2024-02 run, then 2024-01 restated (customers 2024-01 v2): v1 is superseded, and
    still read by 2024-02's last successful run."""
    source = _source(tmp_path / "source", "North")
    runs = Runs(tmp_path / "wh" / "tiering.duckdb", source)
    runs.run("2024-01")
    runs.run("2024-02")
    _source(source, "South")
    runs.run("2024-01", restate=True)
    root = landing_root(runs.warehouse)
    v1 = root / "customers" / "updated_month=2024-01" / "v1.parquet"
    return {"runs": runs, "root": root, "v1": v1, "warehouse": runs.warehouse}


def _landed_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def test_a_version_a_months_last_success_reads_is_kept(restated):
    files = _landed_files(restated["root"])
    outcome = cleanup(restated["warehouse"], Retention(landed=0), now=LATER)["landed"]
    assert (outcome.deleted, outcome.kept, outcome.skipped) == ([], 1, None)
    assert _landed_files(restated["root"]) == files


def test_a_superseded_version_no_last_success_reads_goes_with_its_personal_file(restated):
    runs, root, v1 = restated["runs"], restated["root"], restated["v1"]
    runs.run("2024-02", restate=True)            # 2024-02's last success now reads v2
    runs.run("2024-02", status="failed")         # a failed run counts for nothing
    files, catalog = _landed_files(root), json.loads((root / "_catalog.json").read_text())
    outcome = cleanup(restated["warehouse"], Retention(landed=30), now=LATER)["landed"]
    assert sorted(outcome.deleted) == sorted([str(v1), str(personal_file(v1))])
    assert outcome.kept == 0 and outcome.bytes > 0
    assert _landed_files(root) == files - {"customers/updated_month=2024-01/v1.parquet",
                                           "customers_personal/updated_month=2024-01/v1.parquet"}
    after = json.loads((root / "_catalog.json").read_text())
    versions = after["tables"]["customers"]["partitions"]["2024-01"]
    assert versions[0]["deleted_at"] == LATER.isoformat(timespec="seconds") and "deleted_at" not in versions[1]
    # everything else in the catalog is as it was
    versions[0].pop("deleted_at")
    assert after == catalog
    # a further landing numbers the next version 3, and reads the current one
    _source(runs.source, "West")
    runs.run("2024-01", restate=True)
    assert (root / "customers" / "updated_month=2024-01" / "v3.parquet").exists()
    # cleanup again: v2 is read by 2024-02's last success; v1 already gone
    again = cleanup(restated["warehouse"], Retention(landed=0), now=LATER)["landed"]
    assert again.deleted == [] and again.kept == 1


def test_another_tables_superseded_version_goes_alone(tmp_path):
    """orders 2024-01 restated, customers not: the customers' personal file of 2024-01 v1 is current."""
    source = _source(tmp_path / "source", "North")
    runs = Runs(tmp_path / "wh" / "tiering.duckdb", source)
    runs.run("2024-01")
    write_source(source, orders=[order("O1", "C1", "12.00")])
    runs.run("2024-01", restate=True)
    root = landing_root(runs.warehouse)
    files = _landed_files(root)
    outcome = cleanup(runs.warehouse, Retention(landed=0), now=LATER)["landed"]
    assert outcome.deleted == [str(root / "orders" / "updated_month=2024-01" / "v1.parquet")]
    assert _landed_files(root) == files - {"orders/updated_month=2024-01/v1.parquet"}
    assert (root / "customers_personal" / "updated_month=2024-01" / "v1.parquet").exists()


def test_recently_superseded_versions_and_running_runs_are_kept(restated):
    runs = restated["runs"]
    runs.run("2024-02", restate=True)
    superseded = datetime.fromisoformat(json.loads((restated["root"] / "_catalog.json").read_text())
                                        ["tables"]["customers"]["partitions"]["2024-01"][1]["landed_at"])
    assert cleanup(restated["warehouse"], Retention(landed=30), now=superseded + timedelta(days=29)
                   )["landed"].deleted == []
    # a run still running reads v1 (its manifest says so): kept
    con = connect(restated["warehouse"])
    con.execute("update audit.runs set status = 'running' where run_id = '202402-run2'")
    con.close()
    outcome = cleanup(restated["warehouse"], Retention(landed=30), now=LATER)["landed"]
    assert outcome.deleted == [] and outcome.kept == 1


def test_an_unreadable_manifest_stops_the_landed_cleanup(restated):
    restated["runs"].run("2024-02", restate=True)
    (restated["root"] / "_runs" / "202402-run4.json").write_text("{not json")
    outcome = cleanup(restated["warehouse"], Retention(landed=0), now=LATER)["landed"]
    assert outcome.deleted == [] and "202402-run4" in outcome.skipped and restated["v1"].exists()


def test_dry_run_deletes_nothing(restated):
    restated["runs"].run("2024-02", restate=True)
    catalog = (restated["root"] / "_catalog.json").read_bytes()
    outcome = cleanup(restated["warehouse"], Retention(landed=0), now=LATER, dry_run=True)["landed"]
    assert len(outcome.deleted) == 2 and restated["v1"].exists()
    assert (restated["root"] / "_catalog.json").read_bytes() == catalog


def _aged(path: Path, days: float) -> Path:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_leftovers_gx_docs_and_logs_go_by_age(restated):
    warehouse, root = restated["warehouse"], restated["root"]
    old_tmp = root / "_tmp" / "202403-killed"        # a killed landing's leftovers
    (old_tmp / "customers_personal").mkdir(parents=True)
    _write(old_tmp / "customers_personal" / "2024-03.parquet")
    docs = warehouse.parent / "gx_docs"
    for run in ("old-run", "new-run"):
        (docs / run / "_store").mkdir(parents=True)
        _write(docs / run / "index.html")
        _write(docs / run / "_store" / "result.json")
    for folder, age in ((old_tmp, 40), (docs / "old-run", 40), (docs / "new-run", 1)):
        for path in [*folder.rglob("*"), folder]:
            _aged(path, age)
    logs = {}
    for folder in log_dirs(warehouse):
        (folder / "sub").mkdir(parents=True)
        logs[folder] = (_aged(_write(folder / "sub" / "old.log"), 40), _aged(_write(folder / "new.log"), 1))
    retention = Retention(landed=30, gx_docs=30, logs=30)
    outcomes = cleanup(warehouse, retention)
    assert outcomes["landed"].deleted == [str(old_tmp)] and not old_tmp.exists()
    assert outcomes["gx_docs"].deleted == [str(docs / "old-run")]
    assert sorted(p.name for p in docs.iterdir()) == ["new-run"]
    assert len(logs) == 3 and len(outcomes["logs"].deleted) == 3
    for folder, (old, new) in logs.items():
        assert not old.exists() and not old.parent.exists() and new.exists() and folder.exists()
    text = format_cleanup(outcomes, retention)
    assert text.startswith("cleanup: landed older than 30 d: deleted 1 (of ")
    assert "GX docs older than 30 d: deleted 1" in text and "logs older than 30 d: deleted 3" in text


def _write(path: Path) -> Path:
    path.write_text("a log line\n")
    return path


def test_nothing_goes_without_a_retention(restated, monkeypatch, capsys):
    restated["runs"].run("2024-02", restate=True)
    assert cleanup(restated["warehouse"], Retention(), now=LATER) == {}
    assert cleanup_after_run(restated["warehouse"]) is None
    assert main(["cleanup", "--warehouse", str(restated["warehouse"])]) == 0
    assert "landed: kept (no retention set, TIERING_RETAIN_LANDED_DAYS)" in capsys.readouterr().out
    assert restated["v1"].exists()
    # set in the environment: finish_run's clean-up applies it (0 days: v1 and its personal file go)
    monkeypatch.setenv(ENV["landed"], "0")
    assert cleanup_after_run(restated["warehouse"]).startswith("cleanup: landed older than 0 d: deleted 2")
    assert not restated["v1"].exists()


def test_the_cli_takes_days_and_lists_a_dry_run(restated, capsys):
    restated["runs"].run("2024-02", restate=True)
    assert main(["cleanup", "--landed-days", "0", "--dry-run", "--warehouse", str(restated["warehouse"])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cleanup: landed older than 0 d: would delete 2") and f"  {restated['v1']}" in out
    assert restated["v1"].exists()
    assert main(["cleanup", "--landed-days", "0", "--warehouse", str(restated["warehouse"])]) == 0
    assert not restated["v1"].exists()


@pytest.mark.parametrize(("value", "expected"), [("", None), ("90", 90.0), (" 0 ", 0.0)])
def test_retention_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(ENV["logs"], value)
    assert Retention.from_env().logs == expected
    assert Retention.from_env(logs=7).logs == 7


def test_a_bad_retention_is_refused(monkeypatch):
    monkeypatch.setenv(ENV["gx_docs"], "a month")
    with pytest.raises(TieringError, match="TIERING_RETAIN_GX_DOCS_DAYS='a month' is not a number of days"):
        Retention.from_env()
    monkeypatch.delenv(ENV["gx_docs"])
    with pytest.raises(TieringError, match="give 0 or more days"):
        Retention.from_env(landed=-1)


def test_a_missing_warehouse_keeps_the_landing(tmp_path):
    root = landing_root(tmp_path / "tiering.duckdb")
    root.mkdir(parents=True)
    (root / "_catalog.json").write_text(json.dumps({"tables": {}}))
    outcome = cleanup(tmp_path / "tiering.duckdb", Retention(landed=0), now=LATER)["landed"]
    assert outcome.deleted == [] and "not found" in outcome.skipped
