"""dbt's unit tests (rule edges on fixed inputs: ties, exactly 80 %, empty months; in
dbt_project/models/intermediate/_intermediate__unit_tests.yml) run here, in CI, rather than in
every monthly production run (tiering.pipeline.PRODUCTION_BUILD excludes them)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tiering.dbt_runner import latest_run_spec, run_dbt
from tiering.errors import DbtError
from tiering.pipeline import PRODUCTION_BUILD
from tiering.rules import load_rules
from tiering.settings import DEFAULT_RULES, dbt_target_dir


def test_monthly_builds_leave_unit_tests_to_ci():
    assert PRODUCTION_BUILD[:2] == ("--exclude-resource-type", "unit_test")


def test_every_dbt_unit_test_passes(demo_warehouse: Path, tmp_path: Path):
    warehouse = tmp_path / "tiering.duckdb"
    shutil.copy(demo_warehouse, warehouse)  # dbt writes scratch relations: never the shared warehouse
    spec = latest_run_spec(warehouse, DEFAULT_RULES)
    run_dbt("test", spec, load_rules(), "--select", "test_type:unit")
    results = json.loads((dbt_target_dir() / "run_results.json").read_text())["results"]
    unit = [r for r in results if r["unique_id"].startswith("unit_test.")]
    assert len(unit) >= 20, [r["unique_id"] for r in results]
    assert {r["status"] for r in unit} == {"pass"}


def test_a_null_in_a_listed_column_fails_its_models_not_null_test(demo_warehouse: Path, tmp_path: Path):
    """The model-level not_null_columns test (one query per model, tests/generic/) fails on one
    null, names itself and the rows it found, and passes on the untouched warehouse."""
    warehouse = tmp_path / "tiering.duckdb"
    shutil.copy(demo_warehouse, warehouse)
    spec = latest_run_spec(warehouse, DEFAULT_RULES)
    select = ("--select", "not_null_columns_customer_tier_monthly", "test_name:not_null_columns,int_orders__as_of")
    run_dbt("test", spec, load_rules(), *select)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("update marts.customer_tier_monthly set customer_code = null "
                    "where customer_id in (select min(customer_id) from marts.customer_tier_monthly)")
    with pytest.raises(DbtError, match=r"not_null_columns_customer_tier_monthly: fail \(Got 4 results"):
        run_dbt("test", spec, load_rules(), *select)


def test_the_customer_code_test_finds_a_sequence_number_given_to_another_customer(demo_warehouse: Path,
                                                                                  tmp_path: Path):
    """assert_customer_tier_monthly_customer_code_valid: one customer given another's code (same
    tier, same month) is one sequence number shared by two customers and one customer whose
    number changed since the month before: two rows, each naming what is wrong."""
    warehouse = tmp_path / "tiering.duckdb"
    shutil.copy(demo_warehouse, warehouse)
    spec = latest_run_spec(warehouse, DEFAULT_RULES)
    select = ("--select", "assert_customer_tier_monthly_customer_code_valid")
    run_dbt("test", spec, load_rules(), *select)
    with duckdb.connect(str(warehouse)) as con:
        taker, giver = con.execute("""
            select min(customer_id), max(customer_id) from marts.customer_tier_monthly
            where month = ? group by final_tier having count(*) > 1 order by final_tier limit 1""",
                                   [spec.month]).fetchone()
        con.execute("""update marts.customer_tier_monthly set customer_code = (
                           select customer_code from marts.customer_tier_monthly where customer_id = ? and month = ?)
                       where customer_id = ? and month = ?""", [giver, spec.month, taker, spec.month])
        problems = con.execute(f"""select problem, customer_id from (
            {(dbt_target_dir() / 'compiled' / 'tiering' / 'tests'
              / 'assert_customer_tier_monthly_customer_code_valid.sql').read_text()}) order by problem""").fetchall()
    # (the customers sharing a number are listed in no particular order)
    assert [(problem, sorted(ids.split(", "))) for problem, ids in problems] == [
        ("customer has several sequence numbers", [taker]),
        ("sequence number shared by several customers", sorted([taker, giver]))]
    with pytest.raises(DbtError, match=r"assert_customer_tier_monthly_customer_code_valid: fail \(Got 2 results"):
        run_dbt("test", spec, load_rules(), *select)
