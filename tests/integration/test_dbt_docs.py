"""dbt's documentation can be generated before the first run (docs generate compiles every node,
tests included, against the warehouse as it is)."""
from __future__ import annotations


def test_docs_generate_on_a_new_warehouse(tmp_path, monkeypatch):
    """The tests of the marts kept per month look up the months computed when they compile
    (dbt_project/macros/months.sql); on a new warehouse there is no table to look in yet."""
    from tiering.cli import main

    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    assert main(["dbt", "--warehouse", str(tmp_path / "tiering.duckdb"), "docs", "generate"]) == 0
    assert (tmp_path / "target" / "catalog.json").exists()
