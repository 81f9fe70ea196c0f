"""bench/profile_month.py: a month profiled on a copy of the session's demo warehouse (the month
rerun after the months before), every step, dbt node and SQL statement timed; the base untouched."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.rules import rules_file
from tests.fixtures.warehouse import query
from tiering.landing import load_manifest
from tiering.steps import STEPS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "profile_month.py"


def _profile(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def profiled(demo_warehouse: Path, demo_source: Path, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("profile")
    runs_before = query(demo_warehouse, "select count(*) from audit.runs")[0][0]
    # the potential fitted on a sample of the customers: the step whose query names a DataFrame of
    # the calling function (DuckDB's replacement scan), which the timed connections must not hide
    rules = rules_file(work / "rules", **{"potential.max_customers": 100})
    proc = _profile("--month", "2024-04", "--source", str(demo_source),
                    "--warehouse", str(work / "copy" / "tiering.duckdb"),
                    "--copy-from", str(demo_warehouse), "--sql-threshold", "0", "--top", "3",
                    "--functions", "tiering.quality:build_gate", "--out", str(work / "profile.json"),
                    env={"TIERING_RULES": str(rules)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"result": json.loads((work / "profile.json").read_text()), "stdout": proc.stdout, "work": work,
            "runs_before": runs_before, "base": demo_warehouse}


def test_every_step_dbt_node_and_statement_is_timed(profiled):
    result = profiled["result"]
    assert list(result["steps_s"]) == ["start_run", *STEPS]
    assert set(result["steps_cpu_s"]) == set(result["steps_s"])
    assert result["wall_s"] >= sum(result["steps_s"].values()) * 0.99
    names = {name for _, name in result["dbt_nodes_s"]}
    assert {"int_orders__as_of", "int_invoices__settlement", "customer_tier_monthly"} <= names
    assert result["dbt_nodes_total_s"] > 0
    # (the month's own peak: the copy ran in a child process)
    assert 0 < result["peak_rss_mb"] < 4096
    statements = " ".join(text for _, text in result["sql_statements_s"])
    assert "landing.partitions" in statements               # tiering.warehouse.register_landing, via connect
    assert "purchase_days" in statements                     # tiering.potential's own connection
    assert result["functions_s"]["tiering.quality:build_gate"] > 0
    assert set(result["speed_probe_s"]) == {"before", "after"} and all(s > 0 for s in result["speed_probe_s"].values())
    out = profiled["stdout"]
    assert "machine speed probe" in out
    assert "step                   wall s   CPU s" in out and "dbt nodes (" in out and "cores busy" in out


def test_the_month_ran_on_the_copy_and_the_base_is_untouched(profiled):
    copy = profiled["work"] / "copy" / "tiering.duckdb"
    status, landing_dir = query(copy, "select status, landing_dir from audit.runs where run_id = ?",
                                [profiled["result"]["run_id"]])[0]
    assert status == "success" and landing_dir.startswith(str(copy.parent))
    fit = query(copy, "select status, message from potential.fit_log where run_id = ?", [profiled["result"]["run_id"]])
    assert fit[0][0] == "ok" and "fitted on 100 of" in fit[0][1], fit
    # the base's partition files are linked (immutable); the catalog and the run manifests are the copy's own,
    # naming the copy's files; the month read the partitions its base run read (no restatement, nothing new)
    root, base_root = copy.parent / "landing", profiled["base"].parent / "landing"
    files = sorted(root.rglob("v*.parquet"))
    assert files and all(f.is_symlink() and f.resolve().is_relative_to(base_root.resolve()) for f in files)
    assert not (root / "_catalog.json").is_symlink() and str(base_root) not in (root / "_catalog.json").read_text()
    manifest = load_manifest(landing_dir)      # (files named relative to the landing root it lies in)
    assert not Path(landing_dir).is_symlink() and manifest["restatement"] is False
    assert all(p["file"].startswith(f"{root}/") for t in manifest["tables"].values() for p in t["partitions"].values())
    assert not any(t["landed"] for t in manifest["tables"].values())
    assert query(copy, "select mode, path from audit.publish_state")[0] == (
        "by month", str(copy.parent / "published" / "tiering_bi.duckdb"))
    assert query(profiled["base"], "select count(*) from audit.runs")[0][0] == profiled["runs_before"]


@pytest.mark.parametrize("args, message", [
    (["--copy-from", "/nonexistent/tiering.duckdb"], "no such warehouse file"),
    (["--functions", "tiering.landing:no_such_function"], "is no function"),
])
def test_usage_errors_say_what_to_do(tmp_path, args, message):
    proc = _profile("--month", "2024-04", "--source", str(tmp_path), "--warehouse", str(tmp_path / "w.duckdb"), *args)
    assert proc.returncode != 0 and message in proc.stderr
