"""The pipeline on Spark (dbt-spark session mode, local pyspark), from the landed change log to the
marts, gives DuckDB's results.

Spark is heavy (a JVM, a few minutes per month on 2 cores), so this runs with `make test-spark`,
which installs the optional `spark` dependency group into .venv-spark/ (the main .venv stays as
it is) and sets TIERING_TEST_SPARK=1. The hand-made source of test_postgres_edges (every row rule's
edge, and February restated after January's orders changed) is run on DuckDB, then by
`python -m tiering.targets --target spark` in .venv-spark's Python: Spark reads the landed Parquet
files themselves (views), builds staging, as-of and quarantine, then the core models (--core-only:
dbt run for January, dbt build with their data and unit tests for February); the four marts and the
quarantined rows are compared row by row. (Not the potential and CRM models: their incremental
strategy is delete+insert, which dbt-spark has not.)
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.portability.test_postgres_edges import build_restated_warehouse
from tests.portability.test_postgres_target import assert_same_as_duckdb, run_on_target
from tiering import targets
from tiering.settings import PROJECT_ROOT

SPARK_PYTHON = PROJECT_ROOT / ".venv-spark" / "bin" / "python"

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(os.environ.get("TIERING_TEST_SPARK") != "1",
                       reason="the Spark comparison takes minutes: run `make test-spark`"),
]


def test_pipeline_on_spark_equals_duckdb(tmp_path: Path, monkeypatch):
    if not SPARK_PYTHON.exists():
        pytest.skip(f"{SPARK_PYTHON} is missing: `make test-spark` installs the spark group there")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime (java on PATH or JAVA_HOME): pyspark needs Java 17")
    warehouse = build_restated_warehouse(tmp_path / "duckdb")
    monkeypatch.setenv("TIERING_SPARK_WAREHOUSE_DIR", str(tmp_path / "spark"))
    monkeypatch.chdir(tmp_path)  # derby.log and Spark's scratch files
    summary = run_on_target("spark", warehouse, str(SPARK_PYTHON), "--core-only")
    assert summary["months"] == ["2024-01", "2024-02"]
    assert [b["command"] for b in summary["builds"]] == ["run", "build"]
    assert_same_as_duckdb(summary, "spark", warehouse, set(targets.COMPARED_MARTS))
    # February's views read version 2 of January's orders: staging dropped version 1's partition
    assert [b["landing"]["replaced"] for b in summary["builds"]] == [0, 1]
