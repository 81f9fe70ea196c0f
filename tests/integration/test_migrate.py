"""A warehouse built by the previous core survives the move to the change-log core (issue 33, item 5).

The warehouse is the one the previous core (commit 3029852) built for a small demo source, months
2024-01..2024-03, and what it published to PostgreSQL (tests/fixtures/old_core.py; the fixture's
generate.py made it with that code). Then, with this code:

    a run on it is refused (`tiering migrate` first); `tiering migrate` drops what this core does
    not use and is a no-op the second time; the next month (2024-04) is run, then 2024-02 again.

And: audit.customer_tier_results keeps every old row; the marts keep every month's rows (the
months the rerun rebuilt with the same values); 2024-02 gets the same tiers as the old core gave
it, and 2024-04 those the old core computes for it; customer codes do not change; the quarantine
keeps its old rows in the dbt model's layout; audit.load_batches stays as history; the old
landing folders are left alone; and PostgreSQL's bi/audit keep every row but the new month's
(skipped without PostgreSQL, saying why).

The steps run in-process without the three quality gates: those are being rewritten for the
change log (issue 33) and do not run on this core yet.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import uuid
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.fixtures.old_core import (
    FIXTURE,
    ROOT_MARK,
    build_old_core_warehouse,
    expected_next_month,
    load_postgres,
    params,
)
from tiering import pg_publish
from tiering.errors import TieringError
from tiering.migrate import QUARANTINE_COLUMNS, migrate

PARAMS = params()
OLD_RUNS = PARAMS["run_ids"]
NEW_MONTH = PARAMS["next_month"]                     # 2024-04: a month the old core never ran
RECOMPUTED = "2024-02"                               # an old month run again: rebuilds 2024-02 and 2024-03
UNTOUCHED = date(2024, 1, 1)                         # no run after the migration rebuilds it


def _steps() -> tuple[str, ...]:
    from tiering.steps import STEPS

    return tuple(s for s in STEPS if not s.startswith("gate_"))


def _run(source: Path, warehouse: Path, month: str) -> str:
    from tiering import pipeline

    run = pipeline.start_run({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
    for step in _steps():
        getattr(pipeline, step)(run)
    return run["run_id"]


def _rows(warehouse: Path, sql: str, params_: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params_ or []).fetchall()
    finally:
        con.close()


def _snapshot(warehouse: Path) -> dict[str, list]:
    """The rows the migration must keep, by relation (each sorted)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        relations = {f"marts.{t}" for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "and table_catalog = current_database()").fetchall()}
        relations |= {"audit.customer_tier_results", "audit.load_batches", "audit.runs", "audit.dq_results",
                      "intermediate.int_customer_tier_months", "intermediate.int_customer_code_registry"}
        snapshot = {r: sorted(con.execute(f"select * from {r}").fetchall(), key=repr) for r in relations}
        snapshot["quarantine.rejected_rows"] = sorted(con.execute(
            "select run_id, month, source_table, source_file, source_line, rule, reason, record, "
            "cast(quarantined_at as timestamptz) from quarantine.rejected_rows").fetchall(), key=repr)
        return snapshot
    finally:
        con.close()


# --------------------------------------------------------------------------- PostgreSQL

def _postgres(root: Path):
    """(dbname, dsn_for) of a fresh database holding what the old core published, or (None, reason)."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    admin = os.environ.get(pg_publish.ADMIN_DSN_ENV) or pg_publish.DEFAULT_ADMIN_DSN
    try:
        pg_publish._check_reachable(admin)
        psycopg.connect(admin, connect_timeout=5).close()
    except (pg_publish.NotReachable, psycopg.OperationalError) as exc:
        return None, (f"no PostgreSQL as admin at {pg_publish.redact(admin)} ({exc}); set "
                      f"{pg_publish.ADMIN_DSN_ENV} to a superuser DSN to run the PostgreSQL part")
    dbname = f"tiering_test_migrate_{uuid.uuid4().hex[:8]}"
    pg_publish.ensure_database(dbname, admin)

    def dsn_for(user: str | None = None) -> str:
        return make_conninfo(admin, dbname=dbname, **({"user": user} if user else {}))

    load_postgres(dsn_for("tiering_writer"), root)
    return dbname, dsn_for


def _pg_snapshot(dsn: str) -> dict[str, dict]:
    import psycopg

    with psycopg.connect(dsn) as con:
        snapshot = {}
        for schema, name in con.execute("select table_schema, table_name from information_schema.tables "
                                        "where table_schema in ('bi', 'audit', 'pii')").fetchall():
            columns = [r[0] for r in con.execute(
                "select column_name || ' ' || data_type from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position", [schema, name]).fetchall()]
            rows = con.execute(f'select * from "{schema}"."{name}"').fetchall()
            snapshot[f"{schema}.{name}"] = {"columns": columns, "rows": sorted(rows, key=repr)}
    return snapshot


def _drop_database(dbname: str) -> None:
    import psycopg
    from psycopg import sql

    admin = os.environ.get(pg_publish.ADMIN_DSN_ENV) or pg_publish.DEFAULT_ADMIN_DSN
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))


# --------------------------------------------------------------------------- the scenario

@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("old-core")
    warehouse = build_old_core_warehouse(root)
    source = root / "source"
    unmigrated = root / "unmigrated" / "tiering.duckdb"      # a copy with its landing folders, never migrated
    shutil.copytree(warehouse.parent, unmigrated.parent)
    dbname, pg = _postgres(root)
    saved = {k: os.environ.pop(k, None) for k in (pg_publish.DSN_ENV, pg_publish.LEGACY_DSN_ENV)}
    try:
        if dbname:
            os.environ[pg_publish.DSN_ENV] = pg("tiering_writer")
        result = {"root": root, "warehouse": warehouse, "source": source, "unmigrated": unmigrated,
                  "old_folders": _folder_digests(warehouse.parent / "landing"),
                  "before": _snapshot(warehouse), "pg_skip": None if dbname else pg,
                  "pg_before": _pg_snapshot(pg()) if dbname else None}
        result["migrated"] = migrate(warehouse)
        result["migrated_again"] = migrate(warehouse)
        result["after_migration"] = _snapshot(warehouse)
        result["new_run"] = _run(source, warehouse, NEW_MONTH)
        result["pg_after"] = _pg_snapshot(pg()) if dbname else None
        result["after_new_month"] = _snapshot(warehouse)
        result["rerun"] = _run(source, warehouse, RECOMPUTED)
        result["after_rerun"] = _snapshot(warehouse)
        yield result
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
        if dbname:
            _drop_database(dbname)


def test_a_run_refuses_a_warehouse_of_the_previous_core(scenario):
    from tiering import pipeline

    runs_before = _rows(scenario["unmigrated"], "select count(*) from audit.runs")
    with pytest.raises(TieringError, match=r"built by the previous core \(schema raw.*tiering migrate --warehouse"):
        pipeline.start_run({"month": NEW_MONTH, "source_dir": str(scenario["source"]),
                            "warehouse": str(scenario["unmigrated"])})
    assert _rows(scenario["unmigrated"], "select count(*) from audit.runs") == runs_before   # nothing written


def test_migrate_drops_what_the_new_core_does_not_use_once(scenario):
    summary, again = scenario["migrated"], scenario["migrated_again"]
    assert summary["needed"] and not again["needed"] and again["steps"] == []
    assert {"raw.orders", "raw.batch_rows", "staging.stg_raw__orders", "audit.staging_state",
            "intermediate.int_orders__in_reporting_currency"} <= set(summary["dropped_rows"])
    relations = {f"{s}.{t}" for s, t in _rows(scenario["warehouse"], "select table_schema, table_name from "
                                              "information_schema.tables where table_catalog = current_database()")}
    assert not {r for r in relations if r.startswith("raw.") or r.startswith("staging.stg_raw__")}
    assert "audit.staging_state" not in relations
    assert _rows(scenario["warehouse"], "select count(*) from audit.migrations") == [(1,)]
    # the tables built in place before are plain tables of the new layout now (no marker column)
    columns = {c for (c,) in _rows(scenario["warehouse"], "select column_name from information_schema.columns where "
                                   "table_name in ('int_orders__in_reporting_currency', 'int_invoices__settlement')")}
    assert columns and not columns & {"converted_before", "paid_before"}


def test_audit_results_keep_every_old_row(scenario):
    old = scenario["before"]["audit.customer_tier_results"]
    assert len(old) > 0
    assert {r[-2] for r in old} == set(OLD_RUNS)   # (..., rule_version, run_id, recorded_at)
    for state in ("after_migration", "after_new_month", "after_rerun"):
        kept = [r for r in scenario[state]["audit.customer_tier_results"] if r[-2] in OLD_RUNS]
        assert kept == old, state


def test_marts_keep_every_months_history(scenario):
    before, after = scenario["before"], scenario["after_rerun"]
    assert scenario["after_migration"] == before
    for relation, rows in before.items():
        if not relation.startswith("marts.") and relation != "intermediate.int_customer_tier_months":
            continue
        columns = [c for (c,) in _rows(scenario["warehouse"], "select column_name from information_schema.columns "
                                       "where table_schema || '.' || table_name = ? order by ordinal_position",
                                       [relation])]
        if "month" not in columns:
            continue
        month = columns.index("month")
        untouched = [r for r in rows if r[month] == UNTOUCHED]
        assert untouched == [r for r in after[relation] if r[month] == UNTOUCHED], relation
        assert untouched or relation == "marts.tier_alerts_monthly"   # (no alert in a first month)
        # the months the rerun of 2024-02 rebuilt: the same rows, but for the run that made them
        strip = [i for i, c in enumerate(columns) if c != "run_id"]
        rebuilt = sorted(([r[i] for i in strip] for r in rows if r[month] != UNTOUCHED), key=repr)
        again = sorted(([r[i] for i in strip] for r in after[relation]
                        if r[month] != UNTOUCHED and r[month] != date.fromisoformat(f"{NEW_MONTH}-01")), key=repr)
        assert rebuilt == again, relation


def _results(warehouse: Path, run_id: str) -> list[dict]:
    """A run's audit.customer_tier_results as the fixture's expected CSV holds them (text values)."""
    out = Path(warehouse).parent / f"results-{run_id}.csv"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute(f"copy (select * exclude (run_id, recorded_at) from audit.customer_tier_results "
                    f"where run_id = '{run_id}' order by customer_id) to '{out}' (header)")
    finally:
        con.close()
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_recomputed_month_gets_the_tiers_the_old_core_gave_it(scenario):
    old_run = OLD_RUNS[PARAMS["months_run"].index(RECOMPUTED)]
    old, new = (_results(scenario["warehouse"], r) for r in (old_run, scenario["rerun"]))
    assert len(old) > 20 and new == old


def test_the_new_month_is_what_the_old_core_computes_for_it(scenario):
    assert _results(scenario["warehouse"], scenario["new_run"]) == expected_next_month()
    tiers = {t for (t,) in _rows(scenario["warehouse"], "select distinct final_tier from marts.customer_tier_monthly "
                                 "where month = ?", [date.fromisoformat(f"{NEW_MONTH}-01")])}
    assert {"A", "B", "C"} <= tiers


def test_customer_codes_do_not_change(scenario):
    old = scenario["before"]["intermediate.int_customer_code_registry"]
    registry = scenario["after_rerun"]["intermediate.int_customer_code_registry"]
    assert old and set(old) <= set(registry)        # every old registration, as it was
    sequence = {r[0]: r[1] for r in old}
    added = sorted(r[1] for r in registry if r[0] not in sequence)
    assert added and added[0] == max(sequence.values()) + 1
    # the new month's codes carry the old numbers
    new_month = dict(_rows(scenario["warehouse"], "select customer_id, customer_sequence from "
                           "intermediate.int_customer_tier_months where run_id = ?", [scenario["new_run"]]))
    assert all(new_month[c] == n for c, n in sequence.items() if c in new_month)


def test_the_quarantine_keeps_its_rows_in_the_model_layout(scenario):
    old = scenario["before"]["quarantine.rejected_rows"]
    assert old and {r[0] for r in old} <= set(OLD_RUNS)
    kept = [r for r in scenario["after_rerun"]["quarantine.rejected_rows"] if r[0] in OLD_RUNS]
    assert kept == old
    layout = _rows(scenario["warehouse"], "select column_name, lower(data_type) from information_schema.columns "
                   "where table_schema = 'quarantine' and table_name = 'rejected_rows' order by ordinal_position")
    assert layout == [(c, t) for c, t, _ in QUARANTINE_COLUMNS]
    assert _rows(scenario["warehouse"], "select count(*) from quarantine.rejected_rows where run_id in (?, ?)",
                 [scenario["new_run"], scenario["rerun"]])[0][0] > 0


def test_load_batches_stay_as_history(scenario):
    assert scenario["before"]["audit.load_batches"]
    assert scenario["after_rerun"]["audit.load_batches"] == scenario["before"]["audit.load_batches"]


def test_the_next_run_lands_the_change_log_and_leaves_the_old_folders(scenario):
    landing = scenario["warehouse"].parent / "landing"
    catalog = json.loads((landing / "_catalog.json").read_text())
    assert NEW_MONTH in catalog["tables"]["orders"]["partitions"]
    for run_id in OLD_RUNS:
        manifest = landing / run_id / "_manifest.json"
        expected = (FIXTURE / "landing" / run_id / "_manifest.json").read_text()
        assert manifest.read_text() == expected.replace(ROOT_MARK, str(scenario["root"]))
    assert _folder_digests(landing) == scenario["old_folders"]


def _folder_digests(landing: Path) -> dict[str, str]:
    """SHA-256 of every file in the old landing folders."""
    return {str(f.relative_to(landing)): hashlib.sha256(f.read_bytes()).hexdigest()
            for run_id in OLD_RUNS for f in sorted((landing / run_id).iterdir())}


def test_landed_retention_is_not_blocked_by_the_old_runs(scenario):
    from tiering.retention import Retention, cleanup

    outcome = cleanup(scenario["warehouse"], Retention(landed=0), dry_run=True)["landed"]
    assert outcome.skipped is None       # the old runs read no version of the change log: nothing to keep for them


def test_forget_erases_a_person_in_the_old_landing_folders_too(scenario, tmp_path):
    from tiering.forget import forget

    copy = tmp_path / "warehouse"
    shutil.copytree(scenario["warehouse"].parent, copy)
    old_file = copy / "landing" / OLD_RUNS[-1] / "customers.parquet"
    before = _parquet(old_file)
    person = next(r for r in before if r[2])                      # (customer_id, name, email, phone)
    forget(copy / "tiering.duckdb", person[0], dsn=None)
    after = _parquet(old_file)
    assert [r for r in after if r[0] == person[0]] == [(person[0], None, None, None)] * \
        sum(r[0] == person[0] for r in before)
    assert [r for r in after if r[0] != person[0]] == [r for r in before if r[0] != person[0]]


def _parquet(path: Path) -> list[tuple]:
    return duckdb.sql(f"select customer_id, name, email, phone from '{path}' order by _source_line").fetchall()


@pytest.mark.postgres
def test_postgres_keeps_everything_but_the_new_month(scenario):
    if scenario["pg_skip"]:
        pytest.skip(scenario["pg_skip"])
    before, after = scenario["pg_before"], scenario["pg_after"]
    new_month = date.fromisoformat(f"{NEW_MONTH}-01")
    assert set(before) <= set(after)
    for relation, table in before.items():
        assert after[relation]["columns"] == table["columns"], relation
        names = [c.split(" ")[0] for c in table["columns"]]
        rows_after = after[relation]["rows"]
        if relation == "audit.runs":
            # replaced whole by every publish: the old runs as the warehouse holds them (the run that was
            # publishing when the old core published last is finished there)
            warehouse_runs = {r[0]: r for r in scenario["before"]["audit.runs"]}
            old = [r for r in rows_after if r[0] in OLD_RUNS]
            assert [r[0] for r in old] == sorted(warehouse_runs)
            assert all(r[3] == warehouse_runs[r[0]][3] == "success" for r in old)
        elif relation == "bi.customer_tier_history":
            # rebuilt whole by every run: the intervals closed before stay
            closed = [r for r in table["rows"] if r[names.index("valid_to")] is not None]
            assert closed and set(closed) <= set(rows_after)
        elif relation == "pii.customers":
            assert {r[0] for r in table["rows"]} <= {r[0] for r in rows_after}   # upserted, none removed
        elif "month" in names:
            month = names.index("month")
            assert [r for r in rows_after if r[month] != new_month] == table["rows"], relation
            if relation.startswith("bi."):
                assert any(r[month] == new_month for r in rows_after) or relation == "bi.tier_alerts_monthly"
        else:
            assert rows_after == table["rows"], relation
    assert [r for r in after["audit.customer_tier_results"]["rows"] if r[-2] in OLD_RUNS] == \
        before["audit.customer_tier_results"]["rows"]


def test_the_command_line(scenario, capsys):
    from tiering import cli

    unmigrated = str(scenario["unmigrated"])
    assert cli.main(["migrate", "--warehouse", unmigrated, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"would migrate {unmigrated}") and "schema raw" in out and "left alone: 3 landing" in out
    assert _rows(scenario["unmigrated"], "select count(*) from information_schema.schemata "
                 "where schema_name = 'raw'") == [(1,)]                  # a dry run changes nothing
    assert cli.main(["migrate", "--warehouse", str(scenario["warehouse"])]) == 0
    assert "needs no migration" in capsys.readouterr().out
    assert cli.main(["migrate", "--warehouse", str(scenario["root"] / "none.duckdb")]) == 1
    assert "not found: nothing to migrate" in capsys.readouterr().err
