"""The benchmark (bench/run.py) at scale XS with its default scenarios: a month after the month
before through the real DAG, the single-query and pandas baselines, the DAG parse timer and
kill-and-rerun; every customer's value tier must agree across the three."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("tiering_bench_run", ROOT / "bench" / "run.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def xs_results(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("bench-xs")
    out = work / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--scale", "XS", "--work", str(work / "XS"),
         "--out", str(out), "--results-md", str(work / "RESULTS.md"), "--steady-pairs", "last",
         "--airflow-home", os.environ["AIRFLOW_HOME"], "--timeout", "300"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"json": json.loads((out / "XS.json").read_text()), "md": (work / "RESULTS.md").read_text(),
            "stdout": proc.stdout}


def test_xs_bench_steady_month_runs_after_the_month_before(xs_results):
    steady = xs_results["json"]["scenarios"]["steady"]
    assert [m["month"] for m in steady["months"]] == ["2024-01", "2024-02"]
    assert [m["via"] for m in steady["months"]] == ["steps", "airflow"]
    assert steady["months"][-1]["stages_s"]["extract_land"] > 0
    assert "| month 2024-01 steps, landed in full |" in xs_results["md"]
    assert "| **month 2024-02 via Airflow, after 2024-01** (new partitions only) |" in xs_results["md"]


def test_xs_bench_agreement_and_fields(xs_results):
    results = xs_results["json"]
    assert results["scale"] == "XS" and results["customers"] == 300 and results["month"] == "2024-02"
    assert results["source"]["rows"]["orders.parquet"] > 5000
    assert results["agreement"]["passed"] is True
    pairs = {p["pair"]: p for p in results["agreement"]["pairs"]}
    assert set(pairs) == {"pipeline vs sql", "pipeline vs pandas", "sql vs pandas"}
    for pair in pairs.values():
        assert pair["agree"] and pair["different_tier"] == 0 and pair["only_in_one"] == 0
        assert pair["customers"] >= 300          # every customer known at the month end
    counts = results["agreement"]["tier_counts"]
    assert counts["pipeline"] == counts["sql"] == counts["pandas"]
    assert set(counts["pipeline"]) == {"A", "B", "C"}

    assert set(results["scenarios"]) == {"steady", "sql", "pandas", "parse", "kill"}  # the defaults
    steady = results["scenarios"]["steady"]
    stages = steady["months"][-1]["stages_s"]
    assert set(stages) == {"extract_land", "dbt", "ge", "publish", "other", "airflow_overhead"}
    assert all(v >= 0 for k, v in stages.items() if k != "airflow_overhead")
    assert steady["peak_rss_mb"] > 50 and steady["months"][-1]["wall_s"] > stages["dbt"] > 0
    assert steady["airflow_startup_s"] > 0
    last = steady["months"][-1]
    assert set(last["steps_cpu_s"]) == set(last["steps_s"]) and last["steps_cpu_total_s"] > 0
    probes = results["speed_probe_s"]
    assert {"start", "after steady", "after sql", "after pandas", "after kill"} <= set(probes)
    assert all(0 < seconds < 60 for seconds in probes.values())
    assert "machine speed probe" in xs_results["md"] and "cores busy on average" in xs_results["md"]
    assert results["scenarios"]["sql"]["seconds"] > 0 and results["scenarios"]["pandas"]["seconds"] > 0
    assert results["scenarios"]["parse"]["dags"] == ["customer_tiering_monthly"]
    assert results["scenarios"]["parse"]["dag_parse_s"] < 1.0
    summary = results["summary"]
    assert summary["ratios_from"] == "steady"
    assert summary["dbt_over_single_query"] > 0 and summary["dbt_over_pandas"] > 0
    kill = results["scenarios"]["kill"]  # killed while typing the landed rows, on steady's warehouse
    assert kill["warehouse"] == "steady" and kill["killed_during"] == "transform_staging"
    assert kill["rerun_equals_uninterrupted"] is True
    assert "<!-- bench:XS:begin -->" in xs_results["md"] and "**PASS**" in xs_results["md"]


def test_compare_reports_every_kind_of_mismatch():
    result = bench.compare("a", {"C1": "A", "C2": "B", "C3": "C"}, "b", {"C1": "A", "C2": "C", "C4": "C"})
    assert result["agree"] is False
    assert result["different_tier"] == 1 and result["only_in_one"] == 2
    assert ("C2", "B", "C") in result["examples"]
    assert bench.compare("a", {"C1": "A"}, "b", {"C1": "A"})["agree"] is True


def test_results_md_section_is_replaced_not_duplicated(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nintro kept\n")
    bench.update_results_md(path, "S", "first table\n")
    bench.update_results_md(path, "M", "m table\n")
    bench.update_results_md(path, "S", "second table\n")
    text = path.read_text()
    assert "intro kept" in text and "m table" in text and "second table" in text
    assert "first table" not in text and text.count("<!-- bench:S:begin -->") == 1


@pytest.mark.parametrize("argv, expected", [
    ([], ["steady", "sql", "pandas", "parse", "kill"]),
    (["--memory-limit", "1GB"], ["steady", "sql", "pandas", "parse", "kill", "spill"]),
    (["--months-backfill", "12"], ["steady", "sql", "pandas", "parse", "kill", "backfill"]),
    (["--months-backfill", "12", "--skip-backfill"], ["steady", "sql", "pandas", "parse", "kill"]),
    (["--only", "month,sql"], ["month", "sql"]),
])
def test_default_scenarios_and_opt_ins(argv, expected):
    assert bench.select_scenarios(bench.build_parser().parse_args(argv)) == expected


def test_markdown_of_the_opt_in_month_scenario():
    """The `month` scenario (opt-in since the defaults run steady's last month through Airflow)
    still gives its row, the Airflow start-up and, being the month through Airflow, the ratios."""
    stages = {"extract_land": 3.0, "dbt": 6.0, "ge": 1.0, "publish": 0.5, "other": 0.5,
              "airflow_overhead": 3.0}
    month = {"months": [{"month": "2024-12", "via": "airflow", "wall_s": 14.0, "stages_s": stages,
                         "steps_total_s": 11.0}], "peak_rss_mb": 900, "airflow_startup_s": 1.5}
    results = {"scale": "S", "customers": 10, "months_of_history": 24, "month": "2024-12",
               "source": {"rows": {"orders.parquet": 100}, "generate_s": 1.0, "bytes": 2**20},
               "duckdb_settings": {"threads": 2, "memory_limit": "4GB"}, "started_at": "now",
               "scenarios": {"month": month, "sql": {"seconds": 2.0, "peak_rss_mb": 100}},
               "agreement": {"pairs": [], "tier_counts": {}, "passed": False}}
    results["summary"] = bench.summarise(results)
    assert results["summary"]["ratios_from"] == "month" and results["summary"]["dbt_over_single_query"] == 3.0
    text = bench.markdown(results)
    assert "| one month (2024-12) via Airflow | 14.0 |" in text
    assert "Airflow start-up (DagBag, metadata DB, in-process Execution API; once per process): 1.50 s" in text
