"""`tiering forget` through the pipeline: a small demo source run for 2024-02 (and published to a
fresh PostgreSQL database when one is reachable), one customer forgotten, then:

- the landing's personal files, the CRM export's contact data and PostgreSQL's pii.customers no
  longer hold the person's name, e-mail or phone; other customers keep theirs;
- nothing else in the warehouse or the published copy holds personal data (no such column, and the
  quarantine's records of customers carry none);
- a plain rerun of 2024-02 with the source changed only after the month (a newer version of the
  person in 2024-03) is no restatement, lands nothing, and gives the same marts; a republish does
  not bring the pii row back; 2024-03 lands the person's newer version without their personal data.

The runs skip the quality gates and publish_postgres (not what is tested here: PostgreSQL is
published to explicitly, with the test database's DSN).
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
from datetime import date

import duckdb
import pytest

from tests.fixtures.warehouse import query as _rows
from tests.integration.test_pg_publish import _pg_rows, drop_test_database, make_test_database
from tiering import crm, pg_publish, pipeline
from tiering.cli import main
from tiering.demo import generate
from tiering.personal import personal_files
from tiering.pseudonym import customer_key
from tiering.publish import published_path
from tiering.settings import landing_root
from tiering.steps import STEPS

FEBRUARY, MARCH = date(2024, 2, 1), date(2024, 3, 1)
SKIPPED_STEPS = {"gate_landed", "gate_staging", "gate_marts", "publish_postgres"}
NEWER_EMAIL = "after.forgetting@example.net"
ENV_KEYS = (pg_publish.DSN_ENV, pg_publish.LEGACY_DSN_ENV, crm.PII_ENV)


def _run(source, warehouse, month: str) -> str:
    run = pipeline.start_run({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
    for step in STEPS:
        if step not in SKIPPED_STEPS:
            getattr(pipeline, step)(run)
    return run["run_id"]


def _contacts(warehouse, month: str) -> dict[str, tuple]:
    """{customer_key: (name, email, phone)} of the month's CRM export with contact data."""
    return {r["customer_key"]: (r["contact_name"], r["contact_email"], r["contact_phone"])
            for r in crm.read_actions(warehouse, month, include_contact=True)}


def _tiers(warehouse, month: date) -> list[tuple]:
    return _rows(warehouse, "select * exclude (run_id) from marts.customer_tier_monthly where month = ? "
                            "order by customer_id", [month])


def _personal(root, customer_id: str) -> list[tuple]:
    files = [str(f) for f in personal_files(root)]
    return duckdb.sql(f"select name, email, phone, landing_partition from read_parquet({files}, "
                      f"hive_partitioning = false) where customer_id = '{customer_id}' order by all").fetchall()


@pytest.fixture(scope="module")
def pg():
    """A fresh PostgreSQL database with the migration applied, or None without PostgreSQL."""
    try:
        dbname, dsn_for = make_test_database("tiering_test_forget")
    except pytest.skip.Exception:
        yield None
        return
    try:
        yield dsn_for("tiering_writer")
    finally:
        drop_test_database(dbname)


@pytest.fixture(scope="module")
def world(tmp_path_factory, pg):
    base = tmp_path_factory.mktemp("forget")
    source, warehouse = base / "source", base / "wh" / "tiering.duckdb"
    generate(source, customers=40, months=3, seed=11, start_month="2024-01")
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    for key in ENV_KEYS:
        os.environ.pop(key, None)
    os.environ[crm.PII_ENV] = "1"
    state: dict = {"source": source, "warehouse": warehouse, "root": landing_root(warehouse), "pg": pg}
    try:
        state["run1"] = _run(source, warehouse, "2024-02")
        if pg:
            pg_publish.publish(warehouse, FEBRUARY, pg)
            state["pii_before"] = dict(_pg_rows(pg, "select customer_id, email from pii.customers"))
        state["contacts_before"] = _contacts(warehouse, "2024-02")
        # the person: a customer with an action and contact data in February
        person = next(c for c in sorted(_rows(warehouse, "select distinct customer_id from marts.crm_actions_monthly "
                                                         "where month = ?", [FEBRUARY]))
                      if state["contacts_before"][customer_key(c[0])][1])[0]
        state["person"], state["key"] = person, customer_key(person)
        state["tiers_before"] = _tiers(warehouse, FEBRUARY)
        state["personal_before"] = _personal(state["root"], person)
        logs = warehouse.parent / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        state["email"] = state["contacts_before"][state["key"]][1]
        (logs / "hand-written.log").write_text(f"call {state['email']} back\n")
        state["files_before"] = sorted(p.name for p in state["root"].rglob("*.parquet"))
        out = io.StringIO()
        args = ["forget", "--customer", person, "--warehouse", str(warehouse)] + (["--dsn", pg] if pg else [])
        with contextlib.redirect_stdout(out):
            state["forget_rc"] = main(args)
        state["forget_out"] = out.getvalue()
        state["contacts_after"] = _contacts(warehouse, "2024-02")
        state["personal_after"] = _personal(state["root"], person)
        if pg:
            state["pii_after"] = dict(_pg_rows(pg, "select customer_id, email from pii.customers"))
        state["log_after"] = (logs / "hand-written.log").read_text()
        # a newer version of the person in March: the source changes after February only
        with open(source / "customers.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        latest = max((r for r in rows if r["customer_id"] == person), key=lambda r: r["updated_at"])
        with open(source / "customers.csv", "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=list(rows[0])).writerow(
                {**latest, "email": NEWER_EMAIL, "updated_at": "2024-03-03T10:00:00"})
        state["run2"] = _run(source, warehouse, "2024-02")
        state["tiers_rerun"] = _tiers(warehouse, FEBRUARY)
        state["files_rerun"] = sorted(p.name for p in state["root"].rglob("*.parquet"))
        state["restatement"] = _rows(warehouse, "select restatement from audit.runs where run_id = ?",
                                     [state["run2"]])[0][0]
        if pg:
            pg_publish.publish(warehouse, FEBRUARY, pg)
            state["pii_republished"] = dict(_pg_rows(pg, "select customer_id, email from pii.customers"))
        state["run3"] = _run(source, warehouse, "2024-03")
        state["contacts_march"] = _contacts(warehouse, "2024-03")
        state["personal_march"] = _personal(state["root"], person)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return state


def test_forget_prints_one_line_of_what_was_erased_where(world):
    assert world["forget_rc"] == 0
    lines = world["forget_out"].strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith(f"forgot {world['person']} (key {world['key']}): landing ")
    assert "warehouse: no personal column" in line and "published copy: no personal column" in line
    assert ("1 row(s) deleted from pii.customers" if world["pg"] else "PostgreSQL: not configured") in line
    assert "logs and GX docs: 1 of " in line


def test_the_landing_keeps_no_personal_value_of_the_person(world):
    assert any(v is not None for row in world["personal_before"] for v in row[:3])
    assert world["personal_after"] and all(row[:3] == (None, None, None) for row in world["personal_after"])
    assert world["log_after"] == f"call {'*' * len(world['email'])} back\n"


def test_contact_data_is_gone_for_the_person_only(world):
    before, after, key = world["contacts_before"], world["contacts_after"], world["key"]
    assert before[key][1] and after[key] == (None, None, None)
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
    assert sum(1 for v in after.values() if v[1]) == sum(1 for v in before.values() if v[1]) - 1


def test_postgres_pii_row_is_deleted_and_not_published_again(world):
    if not world["pg"]:
        pytest.skip("no PostgreSQL reachable as admin (TIERING_BI_ADMIN_DSN): pii.customers not tested")
    person = world["person"]
    assert world["pii_before"][person]
    assert person not in world["pii_after"]
    assert {k: v for k, v in world["pii_before"].items() if k != person} == world["pii_after"]
    assert world["pii_republished"] == world["pii_after"]


def test_no_personal_data_elsewhere_in_the_warehouse_or_published_copy(world):
    personal = ("name", "email", "phone")
    for path in (world["warehouse"], published_path(world["warehouse"])):
        columns = _rows(path, "select table_schema || '.' || table_name || '.' || column_name "
                              "from information_schema.columns where column_name in ('name', 'email', 'phone')")
        assert columns == [], path
    keys = _rows(world["warehouse"], "select distinct unnest(json_keys(record)) from quarantine.rejected_rows "
                                     "where source_table = 'customers'")
    assert not {k[0] for k in keys} & set(personal)
    staged = _rows(world["warehouse"], "select column_name from information_schema.columns "
                                       "where table_schema = 'staging' and table_name = 'stg_landing__customers'")
    assert not {c[0] for c in staged} & set(personal)


def test_a_rerun_neither_restates_nor_brings_the_data_back_and_results_are_unchanged(world):
    assert world["restatement"] is False
    assert world["files_rerun"] == world["files_before"]          # nothing landed again
    assert world["tiers_rerun"] == world["tiers_before"] and len(world["tiers_before"]) > 0
    assert all(row[:3] == (None, None, None) for row in _personal(world["root"], world["person"])
               if row[3] <= "2024-02")


def test_a_later_month_lands_the_persons_newer_version_without_personal_data(world):
    march = [row for row in world["personal_march"] if row[3] == "2024-03"]
    assert march and all(row[:3] == (None, None, None) for row in march)
    assert world["contacts_march"].get(world["key"], (None, None, None)) == (None, None, None)
    assert any(v[1] for v in world["contacts_march"].values())    # the others still have theirs
