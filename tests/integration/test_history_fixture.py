"""Movements, validity intervals, overrides, reruns and run order on a hand-made fixture.

Value window of 1 month (so each month's value is that month's orders), Pareto 80/95:

  month  W1   W2            W3                W4         tiers (W1, W2, W3, W4)
  Jan    80   -             (not a customer)  20         A  C  -  B
  Feb    20   - override A  created, no orders 80        B  A* C  A
  Mar    80   - override A  -                 20         A  A* C  B
  Apr    80   -             20                -          A  C  B  C (W4 lapsed)
  May    80   -             20                -          A  C  B  C
  (* W2's override: tier A from 2024-02 to 2024-03 inclusive, then it expires by itself)
"""
from __future__ import annotations

import json
import random
from datetime import date

import duckdb
import pytest

from tests.conftest import run_steps
from tests.fixtures.rules import rules_file
from tests.fixtures.sources import customer, order, write_source
from tests.fixtures.warehouse import published_differences
from tests.fixtures.warehouse import query as _rows
from tiering.dbt_runner import run_dbt
from tiering.pseudonym import approver_key
from tiering.rules import load_rules
from tiering.runspec import RunSpec

MONTHS = ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"]
D = {m: date(int(m[:4]), int(m[5:]), 1) for m in MONTHS}

EXPECTED_MONTHLY = {
    # (customer, month): (final_tier, movement, previous_final_tier, is_overridden)
    ("W1", "2024-01"): ("A", "new", None, False),
    ("W1", "2024-02"): ("B", "downgraded", "A", False),
    ("W1", "2024-03"): ("A", "upgraded", "B", False),
    ("W1", "2024-04"): ("A", "unchanged", "A", False),
    ("W1", "2024-05"): ("A", "unchanged", "A", False),
    ("W2", "2024-01"): ("C", "new", None, False),
    ("W2", "2024-02"): ("A", "upgraded", "C", True),
    ("W2", "2024-03"): ("A", "unchanged", "A", True),
    ("W2", "2024-04"): ("C", "downgraded", "A", False),
    ("W2", "2024-05"): ("C", "unchanged", "C", False),
    ("W3", "2024-02"): ("C", "new", None, False),
    ("W3", "2024-03"): ("C", "unchanged", "C", False),
    ("W3", "2024-04"): ("B", "upgraded", "C", False),
    ("W3", "2024-05"): ("B", "unchanged", "B", False),
    ("W4", "2024-01"): ("B", "new", None, False),
    ("W4", "2024-02"): ("A", "upgraded", "B", False),
    ("W4", "2024-03"): ("B", "downgraded", "A", False),
    ("W4", "2024-04"): ("C", "lapsed", "B", False),
    ("W4", "2024-05"): ("C", "unchanged", "C", False),
}

EXPECTED_HISTORY = [
    # customer, final_tier, valid_from, valid_to (exclusive), is_current
    ("W1", "A", D["2024-01"], D["2024-02"], False),
    ("W1", "B", D["2024-02"], D["2024-03"], False),
    ("W1", "A", D["2024-03"], None, True),
    ("W2", "C", D["2024-01"], D["2024-02"], False),
    ("W2", "A", D["2024-02"], D["2024-04"], False),
    ("W2", "C", D["2024-04"], None, True),
    ("W3", "C", D["2024-02"], D["2024-04"], False),
    ("W3", "B", D["2024-04"], None, True),
    ("W4", "B", D["2024-01"], D["2024-02"], False),
    ("W4", "A", D["2024-02"], D["2024-03"], False),
    ("W4", "B", D["2024-03"], D["2024-04"], False),
    ("W4", "C", D["2024-04"], None, True),
]

MONTHLY_SQL = "select * exclude (run_id) from marts.customer_tier_monthly order by customer_id, month"
HISTORY_SQL = "select * from marts.customer_tier_history order by customer_id, valid_from"
ALERTS_SQL = "select * from marts.tier_alerts_monthly order by all"
AGGREGATES_SQL = tuple(f"select * from marts.{table} order by all" for table in
                       ("tier_summary_monthly", "tier_migration_monthly", "pareto_curve_monthly"))


@pytest.fixture(scope="module")
def source_and_rules(tmp_path_factory):
    base = tmp_path_factory.mktemp("history")
    orders = []
    for i, (month, w1, w3, w4) in enumerate([("2024-01", 80, 0, 20), ("2024-02", 20, 0, 80), ("2024-03", 80, 0, 20),
                                            ("2024-04", 80, 20, 0), ("2024-05", 80, 20, 0)]):
        for cid, amount in (("W1", w1), ("W3", w3), ("W4", w4)):
            if amount:
                orders.append(order(f"O{i}{cid}", cid, f"{amount}.00", ordered_at=f"{month}-10T10:00:00"))
    source = write_source(
        base / "source",
        customers=[customer("W1"), customer("W2"), customer("W4"),
                   customer("W3", created="2024-02-03T09:00:00")],
        orders=orders,
        tier_overrides=[{"override_id": "OV1", "customer_id": "W2", "tier": "A", "reason": "strategic partner",
                         "approver": "head of sales", "valid_from": "2024-02", "valid_until": "2024-03",
                         "updated_at": "2024-01-15T09:00:00"}],
    )
    rules = rules_file(base / "rules", **{"value.window_months": 1})
    return source, rules


def _backfill(source, rules, warehouse, months):
    return {m: run_steps({"month": m, "source_dir": str(source), "warehouse": str(warehouse),
                          "rules_path": str(rules)}) for m in months}


@pytest.fixture(scope="module")
def in_order(source_and_rules, tmp_path_factory):
    source, rules = source_and_rules
    warehouse = tmp_path_factory.mktemp("in-order") / "tiering.duckdb"
    runs = _backfill(source, rules, warehouse, MONTHS)
    return warehouse, runs


def test_movements_by_hand(in_order):
    warehouse, _ = in_order
    rows = _rows(warehouse, """select customer_id, strftime(month, '%Y-%m'), final_tier, movement,
                               previous_final_tier, is_overridden from marts.customer_tier_monthly""")
    assert {(r[0], r[1]): tuple(r[2:]) for r in rows} == EXPECTED_MONTHLY


def test_validity_intervals_by_hand(in_order):
    warehouse, _ = in_order
    assert _rows(warehouse, HISTORY_SQL) == EXPECTED_HISTORY


def test_override_is_visible_and_expires(in_order):
    warehouse, _ = in_order
    rows = _rows(warehouse, """select strftime(month, '%Y-%m'), final_tier, is_overridden, override_reason
                               from marts.customer_tier_monthly where customer_id = 'W2' order by month""")
    assert rows == [("2024-01", "C", False, None), ("2024-02", "A", True, "strategic partner"),
                    ("2024-03", "A", True, "strategic partner"), ("2024-04", "C", False, None),
                    ("2024-05", "C", False, None)]
    audit = _rows(warehouse, """select strftime(month, '%Y-%m'), matrix_tier, final_tier, override_approved_by_key
                                from audit.customer_tier_results where customer_id = 'W2' and is_overridden
                                order by month""")
    key = approver_key("head of sales")   # the approver, pseudonymous (tiering.pseudonym)
    assert audit == [("2024-02", "C", "A", key), ("2024-03", "C", "A", key)]


def test_run_order_does_not_matter(in_order, source_and_rules, tmp_path_factory):
    warehouse, _ = in_order
    source, rules = source_and_rules
    # 02, 05, 04, 03, 01: a month after the others, months between two computed ones, and one before
    # all of them (what a reverse order would test too, at the cost of another five months)
    months = random.Random(3).sample(MONTHS, len(MONTHS))
    assert months == ["2024-02", "2024-05", "2024-04", "2024-03", "2024-01"]
    other = tmp_path_factory.mktemp("shuffled") / "tiering.duckdb"
    runs = _backfill(source, rules, other, months)
    assert _rows(other, MONTHLY_SQL) == _rows(warehouse, MONTHLY_SQL)
    assert _rows(other, HISTORY_SQL) == _rows(warehouse, HISTORY_SQL)
    assert _rows(other, ALERTS_SQL) == _rows(warehouse, ALERTS_SQL)
    for sql in AGGREGATES_SQL:
        assert _rows(other, sql) == _rows(warehouse, sql)
    # every month after the first was published by month (tiering.publish), out of order too
    assert _rows(other, "select mode from audit.publish_state") == [("by month",)]
    assert published_differences(other) == {}
    # each run rebuilt its month and the next one computed (macros/months.sql); a rebuild of every
    # month from the monthly facts gives the same rows
    kept = {sql: _rows(other, sql) for sql in (MONTHLY_SQL, ALERTS_SQL, *AGGREGATES_SQL)}
    spec = RunSpec.from_conf(runs["2024-01"])
    run_dbt("build", spec, load_rules(spec.rules_path), "--select", "customer_tier_monthly", "tier_alerts_monthly",
            "tier_summary_monthly", "tier_migration_monthly", "pareto_curve_monthly", "--full-refresh")
    assert {sql: _rows(other, sql) for sql in kept} == kept


def test_rerun_of_an_old_month_changes_nothing_but_the_audit(in_order, source_and_rules):
    warehouse, _ = in_order
    source, rules = source_and_rules
    monthly, history, alerts = (_rows(warehouse, sql) for sql in (MONTHLY_SQL, HISTORY_SQL, ALERTS_SQL))
    runs_before = _rows(warehouse, "select count(*) from audit.runs where month = ?", [D["2024-03"]])[0][0]
    _backfill(source, rules, warehouse, ["2024-03"])
    assert _rows(warehouse, MONTHLY_SQL) == monthly
    assert _rows(warehouse, HISTORY_SQL) == history
    assert _rows(warehouse, ALERTS_SQL) == alerts
    assert _rows(warehouse, "select count(*) from audit.runs where month = ?", [D["2024-03"]])[0][0] == runs_before + 1
    assert _rows(warehouse, "select count(distinct run_id) from audit.customer_tier_results where month = ?",
                 [D["2024-03"]])[0][0] == runs_before + 1


def test_explain_gives_the_hand_computed_numbers(in_order, capsys):
    from tiering.cli import main

    warehouse, runs = in_order
    assert main(["explain", "--customer", "W1", "--month", "2024-02", "--warehouse", str(warehouse)]) == 0
    text = capsys.readouterr().out
    assert "final tier B (value tier B, credit grade unrated), movement downgraded from A" in text
    assert "net revenue      20.00" in text
    assert "rank             2 of 2 customers with positive value" in text
    assert "prior share      80.0000%   cumulative share 100.0000%" in text
    assert "pareto: A if prior_share < 0.8; B if prior_share < 0.95; else C" in text
    assert "matrix[B][unrated] = B" in text
    # what the run read: the change-log partition versions of each table, with their fingerprints
    manifest = RunSpec.from_conf(runs["2024-02"]).landing_manifest
    assert f"input partitions  from {manifest} (they give the run's input checksum)" in text
    assert "  orders: orders.csv, 4 rows read, 0 quarantined by this run; 2024-01 v1 (2 rows, #" in text
    assert "  customers: customers.csv, 4 rows read, 0 quarantined by this run; 2023-01 v1 (3 rows, #" in text
    assert "  invoices: no source file, 0 rows read, 0 quarantined by this run; no partition" in text
    assert main(["explain", "--customer", "W1", "--month", "2024-02", "--warehouse", str(warehouse), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["customer"]["value_rank"] == 2 and data["customer"]["run_id"] == runs["2024-02"]["run_id"]
    assert data["thresholds"] == {"a_share": 0.8, "b_share": 0.95}
    inputs = data["inputs"]
    assert inputs["available"] and inputs["checksum_matches"] and inputs["manifest"] == str(manifest)
    read = {t["source_table"]: [(p["partition"], p["version"], p["rows"]) for p in t["partitions"]]
            for t in inputs["tables"]}
    assert read == {"customers": [("2023-01", 1, 3), ("2024-02", 1, 1)],
                    "orders": [("2024-01", 1, 2), ("2024-02", 1, 2)],
                    "tier_overrides": [("2024-01", 1, 1)], "invoices": [], "payments": [], "fx_rates": []}
    assert all(p["hash"] and p["landed_by"] == runs["2024-01"]["run_id"] for t in inputs["tables"]
               for p in t["partitions"] if p["partition"] < "2024-02")


def test_explain_says_when_the_runs_manifest_is_gone(in_order, capsys, tmp_path):
    """A run's landing manifest removed (by hand, or by a retention): explain says so, the rest stays."""
    import shutil

    from tiering.cli import main

    warehouse, runs = in_order
    copy = tmp_path / "tiering.duckdb"
    shutil.copy(warehouse, copy)
    con = duckdb.connect(str(copy))
    con.execute("update audit.runs set landing_dir = ? where run_id = ?",
                [str(tmp_path / "gone.json"), runs["2024-02"]["run_id"]])
    con.close()
    assert main(["explain", "--customer", "W1", "--month", "2024-02", "--warehouse", str(copy)]) == 0
    text = capsys.readouterr().out
    assert "final tier B (value tier B, credit grade unrated)" in text
    assert f"input partitions  unknown: the run's landing manifest {tmp_path / 'gone.json'} is gone" in text


def test_explain_unknown_customer_or_month_fails_clearly(in_order, capsys):
    from tiering.cli import main

    warehouse, _ = in_order
    assert main(["explain", "--customer", "NOPE", "--month", "2024-02", "--warehouse", str(warehouse)]) == 1
    assert "customer 'NOPE' is not known in 2024-02" in capsys.readouterr().err
    assert main(["explain", "--customer", "W1", "--month", "2023-02", "--warehouse", str(warehouse)]) == 1
    assert "month 2023-02 has not been computed" in capsys.readouterr().err
