"""The dbt project on Spark (dbt-spark session mode, local pyspark) gives the same marts as DuckDB.

Spark is heavy (a JVM, minutes per month on 2 cores), so this runs with `make test-spark`,
which installs the optional `spark` dependency group into .venv-spark/ (the main .venv stays
as it is) and sets TIERING_TEST_SPARK=1. Two months of the session's demo warehouse are
replayed by `python -m tiering.targets --target spark` in .venv-spark's Python (dbt run for
the first, dbt build with every data and unit test for the second) and the monthly marts are
compared row by row.
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.portability.test_postgres_target import replay
from tiering.settings import PROJECT_ROOT

SPARK_PYTHON = PROJECT_ROOT / ".venv-spark" / "bin" / "python"

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(os.environ.get("TIERING_TEST_SPARK") != "1",
                       reason="the Spark comparison takes minutes: run `make test-spark`"),
]


def test_marts_on_spark_equal_duckdb(demo_warehouse, tmp_path, monkeypatch):
    if not SPARK_PYTHON.exists():
        pytest.skip(f"{SPARK_PYTHON} is missing: `make test-spark` installs the spark group there")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime (java on PATH or JAVA_HOME): pyspark needs Java 17")
    monkeypatch.setenv("TIERING_SPARK_WAREHOUSE_DIR", str(tmp_path / "spark"))
    monkeypatch.chdir(tmp_path)  # derby.log and Spark's scratch files
    summary = replay("spark", demo_warehouse, str(SPARK_PYTHON), "--months", "2024-01", "2024-02", "--core-only")
    assert "error" not in summary, summary.get("error")
    assert summary["months"] == ["2024-01", "2024-02"]
    assert [b["command"] for b in summary["builds"]] == ["run", "build"]
    assert set(summary["marts"]) == {"customer_tier_monthly", "customer_credit_monthly", "tier_summary_monthly"}
    for table, result in summary["marts"].items():
        assert result["differences"] == [], (table, result["differences"])
        assert result["rows"] == result["spark_rows"] > 0, table
    assert summary["identical"] is True
