"""The published copy BI reads: made by month when that gives what a full copy would, else in full.

The demo warehouse (2024-01..04 in order) and the history fixture (months out of order) check that
every copy made by month equals the marts; here, what forces a full copy."""
from __future__ import annotations

import logging
import os
import shutil
from datetime import date

import pytest

from tests.conftest import DEMO_WAREHOUSE_MONTHS
from tests.fixtures.warehouse import published_differences
from tests.fixtures.warehouse import query as _rows
from tiering import publish
from tiering.dbt_runner import run_dbt
from tiering.publish import publish_duckdb, published_path
from tiering.rules import load_rules
from tiering.runspec import RunSpec
from tiering.warehouse import connect

LAST = date(2024, 4, 1)


def test_the_demo_months_were_published_by_month_and_the_copy_holds_the_marts(demo_warehouse):
    modes = _rows(demo_warehouse, "select mode, month from audit.publish_state")
    assert modes == [("by month", LAST)]
    assert published_differences(demo_warehouse) == {}
    # every pipeline dbt command logged itself with its run (macros/invocations.sql)
    runs = _rows(demo_warehouse, "select run_id from audit.runs order by month")
    logged = _rows(demo_warehouse, "select run_id, command from audit.dbt_invocations order by seq")
    assert len(runs) == len(DEMO_WAREHOUSE_MONTHS)
    assert {r[0] for r in logged} == {r[0] for r in runs} and {c for _, c in logged} == {"build"}


@pytest.fixture()
def copy(demo_warehouse, tmp_path):
    """A copy of the demo warehouse with its published copy (modification time kept)."""
    warehouse = tmp_path / "tiering.duckdb"
    shutil.copy2(demo_warehouse, warehouse)
    published_path(warehouse).parent.mkdir()
    shutil.copy2(published_path(demo_warehouse), published_path(warehouse))
    return warehouse


def _spec(warehouse, run_id: str) -> RunSpec:
    return RunSpec(month=LAST, run_id=run_id, source_dir=warehouse.parent, warehouse=warehouse)


def _publish(warehouse, run_id: str, caplog) -> tuple[str, str]:
    """The publish's mode, and what it said (its reason for a full copy and its log lines)."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tiering.publish"):
        result = publish_duckdb(_spec(warehouse, run_id))
    assert published_differences(warehouse) == {}
    return result["mode"], result.get("reason_full", "") + caplog.text


def test_by_month_when_only_the_run_itself_wrote_since(copy, caplog):
    mode, said = _publish(copy, "run-2", caplog)
    assert mode == "by month", said
    spec = _spec(copy, "run-3")
    run_dbt("build", spec, load_rules(spec.rules_path), "--select", "customer_tier_monthly")
    mode, said = _publish(copy, "run-3", caplog)
    assert mode == "by month" and "months 2024-04 replaced" in said


def test_an_ad_hoc_dbt_command_since_the_last_publish_forces_a_full_copy(copy, caplog):
    spec = _spec(copy, "parse-only")
    run_dbt("build", spec, load_rules(spec.rules_path), "--select", "tier_summary_monthly")
    mode, said = _publish(copy, "run-2", caplog)
    assert mode == "full" and "other runs than this one (parse-only)" in said
    assert _publish(copy, "run-3", caplog)[0] == "by month"


def test_a_replaced_or_missing_copy_a_changed_schema_or_a_retried_publish_forces_a_full_copy(copy, caplog):
    target = published_path(copy)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 1_000_000_000))
    mode, said = _publish(copy, "run-2", caplog)
    assert mode == "full" and "changed since it was published" in said
    mode, said = _publish(copy, "run-2", caplog)
    assert mode == "full" and "this run published before" in said
    target.unlink()
    mode, said = _publish(copy, "run-3", caplog)
    assert mode == "full" and "is not there" in said
    con = connect(copy)
    con.execute("alter table marts.tier_policy add column note varchar")
    con.close()
    mode, said = _publish(copy, "run-4", caplog)
    assert mode == "full" and "tables or columns changed" in said
    assert _rows(copy, "select count(*) from audit.publish_state")[0][0] == 1


def test_a_copy_with_much_free_space_is_made_again_in_full(copy, caplog, monkeypatch):
    monkeypatch.setattr(publish, "FREE_LIMIT", -1)
    mode, said = _publish(copy, "run-2", caplog)
    assert mode == "full" and "of the copy's file is free blocks" in said
