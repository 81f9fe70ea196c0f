"""`tiering export`: one month's marts as Parquet + a DuckDB file, checked against the published copy
of the session's demo warehouse (read only; the export goes to tmp_path)."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tiering.cli import main
from tiering.publish import published_path

MONTH = "2024-03"   # a middle month: earlier and later rows must stay out
MONTH_DATE = date(2024, 3, 1)
MARTS_WITH_MONTH = ("customer_tier_monthly", "customer_credit_monthly", "tier_summary_monthly",
                    "tier_migration_monthly", "pareto_curve_monthly", "tier_alerts_monthly")


@pytest.fixture(scope="module")
def published(demo_warehouse):
    con = duckdb.connect(str(published_path(demo_warehouse)), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def exported(demo_warehouse, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    assert main(["export", "--month", MONTH, "--out", str(out), "--warehouse", str(demo_warehouse)]) == 0
    return out


def test_files_and_manifest(exported, published, capsys):
    folder = exported / MONTH
    names = sorted(p.name for p in folder.iterdir())
    for table in (*MARTS_WITH_MONTH, "customer_tier_history", "tier_policy"):
        assert f"{table}.parquet" in names
    assert {"manifest.json", "README.md", f"tiering_{MONTH}.duckdb"} <= set(names)
    assert [p.name for p in exported.iterdir()] == [MONTH]  # no temporary folder left behind

    manifest = json.loads((folder / "manifest.json").read_text())
    rule_version, run_id = published.execute(
        "select distinct rule_version, run_id from marts.customer_tier_monthly where month = ?",
        [MONTH_DATE]).fetchall()[0]
    assert manifest["month"] == MONTH
    assert manifest["rule_version"] == rule_version and manifest["run_id"] == run_id
    customers = published.execute("select count(*) from marts.customer_tier_monthly where month = ?",
                                  [MONTH_DATE]).fetchone()[0]
    assert manifest["tables"]["customer_tier_monthly"]["rows"] == customers > 100


@pytest.mark.parametrize("table", MARTS_WITH_MONTH)
def test_month_tables_hold_exactly_the_month(exported, published, table):
    data = pq.read_table(exported / MONTH / f"{table}.parquet")
    expected = published.execute(f"select count(*) from marts.{table} where month = ?", [MONTH_DATE]).fetchone()[0]
    assert data.num_rows == expected
    assert set(data.column("month").to_pylist()) <= {MONTH_DATE}
    manifest = json.loads((exported / MONTH / "manifest.json").read_text())
    assert manifest["tables"][table]["rows"] == expected


def test_history_rows_valid_in_the_month_and_policy_whole(exported, published):
    history = pq.read_table(exported / MONTH / "customer_tier_history.parquet").to_pylist()
    tiers = dict(published.execute("select customer_id, final_tier from marts.customer_tier_monthly "
                                   "where month = ?", [MONTH_DATE]).fetchall())
    # exactly one interval per customer of the month, valid in it, with the month's final tier
    assert sorted(r["customer_id"] for r in history) == sorted(tiers)
    for row in history:
        assert row["valid_from"] <= MONTH_DATE and (row["valid_to"] is None or row["valid_to"] > MONTH_DATE)
        assert row["final_tier"] == tiers[row["customer_id"]]
    policy = pq.read_table(exported / MONTH / "tier_policy.parquet")
    assert sorted(policy.column("tier").to_pylist()) == [r[0] for r in published.execute(
        "select tier from marts.tier_policy order by tier").fetchall()]


def test_duckdb_file_holds_the_same_tables(exported):
    folder = exported / MONTH
    con = duckdb.connect(str(folder / f"tiering_{MONTH}.duckdb"), read_only=True)
    try:
        for table in (*MARTS_WITH_MONTH, "customer_tier_history", "tier_policy"):
            rows = con.execute(f"select count(*) from marts.{table}").fetchone()[0]
            assert rows == pq.read_metadata(folder / f"{table}.parquet").num_rows
        revenue = con.execute("select sum(net_revenue) from marts.customer_tier_monthly").fetchone()[0]
    finally:
        con.close()
    assert float(revenue) == pytest.approx(
        sum(float(v)
            for v in pq.read_table(folder / "customer_tier_monthly.parquet").column("net_revenue").to_pylist()))


def test_export_again_replaces_the_folder(demo_warehouse, exported, capsys):
    stale = exported / MONTH / "stale.txt"
    stale.write_text("from an earlier export")
    assert main(["export", "--month", MONTH, "--out", str(exported), "--warehouse", str(demo_warehouse)]) == 0
    out = capsys.readouterr().out
    assert f"exported {MONTH}" in out and "customer_tier_monthly.parquet" in out
    assert not stale.exists()
    assert sorted(p.name for p in exported.iterdir()) == [MONTH]


def test_missing_month_and_missing_copy_are_clear_errors(demo_warehouse, tmp_path, capsys):
    assert main(["export", "--month", "2019-01", "--out", str(tmp_path), "--warehouse", str(demo_warehouse)]) == 1
    err = capsys.readouterr().err
    assert "no successful run of 2019-01 in" in err and "2024-01..2024-04" in err
    assert not any(tmp_path.iterdir())  # nothing left behind

    assert main(["export", "--month", MONTH, "--out", str(tmp_path / "out"),
                 "--warehouse", str(tmp_path / "none" / "tiering.duckdb")]) == 1
    assert "run a month first" in capsys.readouterr().err


def test_every_exported_column_is_documented(published):
    """The export's README sends readers to the dbt docs: every mart and column has a description."""
    import yaml

    from tiering.settings import DBT_PROJECT_DIR

    doc = yaml.safe_load((DBT_PROJECT_DIR / "models" / "marts" / "_marts__models.yml").read_text())
    described = {m["name"]: {c["name"] for c in m.get("columns", []) if c.get("description")}
                 for m in doc["models"] if m.get("description")}
    undocumented = [f"{table}.{column}" for table, column in published.execute("""
        select table_name, column_name from information_schema.columns
        where table_schema = 'marts' order by table_name, ordinal_position""").fetchall()
        if column not in described.get(table, set())]
    assert not undocumented, f"describe these in _marts__models.yml: {undocumented}"
