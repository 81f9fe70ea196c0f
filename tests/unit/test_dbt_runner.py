"""tiering.dbt_runner's parse: fixed stand-in vars and warehouse path (so dbt's partial parse is
reused by the next process), one manifest per rule version and warehouse file name."""
from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from tiering import dbt_runner
from tiering.rules import load_rules
from tiering.runspec import RunSpec


class FakeResult:
    success = True
    exception = None

    def __init__(self, result):
        self.result = result


@pytest.fixture
def parses(monkeypatch):
    """Every `dbt parse` the runner asks for: (vars, TIERING_WAREHOUSE at that moment)."""
    import dbt.cli.main

    calls: list[tuple[dict, str | None]] = []

    class FakeRunner:
        def invoke(self, args):
            assert args[0] == "parse"
            calls.append((json.loads(args[args.index("--vars") + 1]), os.environ.get("TIERING_WAREHOUSE")))
            return FakeResult(f"manifest-{len(calls)}")

    monkeypatch.setattr(dbt.cli.main, "dbtRunner", FakeRunner)
    monkeypatch.setattr(dbt_runner, "_MANIFESTS", {})
    monkeypatch.setenv("TIERING_WAREHOUSE", "/somewhere/else.duckdb")
    return calls


def _spec(month: date, warehouse: str) -> RunSpec:
    return RunSpec(month=month, run_id=f"run-{month:%Y%m}", source_dir=Path("."), warehouse=Path(warehouse))


def test_parse_uses_stand_ins_not_the_months_vars_or_path(parses):
    rules = load_rules()
    dbt_runner._manifest(_spec(date(2024, 3, 1), "/data/wh/tiering.duckdb"), rules)
    [(parse_vars, warehouse)] = parses
    assert parse_vars["month"] == "2000-01-01" and parse_vars["run_id"] == "parse"
    assert parse_vars["rules"] == rules.data and parse_vars["rule_version"] == rules.version
    # the DuckDB catalog is the file's stem: the stand-in keeps the file name
    assert warehouse == str(Path("/parse-placeholder") / "tiering.duckdb")
    assert os.environ["TIERING_WAREHOUSE"] == "/somewhere/else.duckdb"  # put back afterwards


def test_one_manifest_per_rule_version_and_warehouse_name(parses):
    rules = load_rules()
    first = dbt_runner._manifest(_spec(date(2024, 1, 1), "/a/tiering.duckdb"), rules)
    again = dbt_runner._manifest(_spec(date(2024, 7, 1), "/b/tiering.duckdb"), rules)
    other = dbt_runner._manifest(_spec(date(2024, 1, 1), "/a/other.duckdb"), rules)
    assert first == again != other
    assert len(parses) == 2


def test_the_marts_schema_is_parsed_in_and_keys_the_manifest(parses):
    """The schema the marts are built into (var marts_schema: a pipeline run builds them into
    marts_pending, tiering.marts_build) is fixed when parsing: one manifest per schema."""
    rules = load_rules()
    spec = _spec(date(2024, 1, 1), "/a/tiering.duckdb")
    pending = dbt_runner._manifest(spec, rules, "marts_pending")
    again = dbt_runner._manifest(spec, rules, "marts_pending")
    live = dbt_runner._manifest(spec, rules)
    assert pending == again != live
    assert [p[0].get("marts_schema") for p in parses] == ["marts_pending", None]
