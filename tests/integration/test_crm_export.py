"""`tiering crm-export` on the session demo warehouse (read-only): the file validates against the
documented JSON schema, holds pseudonymous keys only, re-exports give the same upsert keys (and
bytes), contact data needs the PII role; and marts.crm_actions_monthly follows the tier policy."""
from __future__ import annotations

import csv
import json
import re

import duckdb
import jsonschema
import pytest

from tiering import crm
from tiering.cli import main
from tiering.pseudonym import customer_key

MONTH = "2024-04"


@pytest.fixture(scope="module")
def mart(demo_warehouse):
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    try:
        actions = con.execute("select * from marts.crm_actions_monthly where month = date '2024-04-01'").df()
        tiers = con.execute("select * from marts.customer_tier_monthly where month = date '2024-04-01'").df()
        potential = con.execute("select * from marts.customer_potential_monthly").df()
        counts = con.execute("""select (select count(*) from marts.customer_tier_monthly),
                                       (select count(*) from marts.customer_potential_monthly)""").fetchone()
    finally:
        con.close()
    return {"actions": actions, "tiers": tiers, "potential": potential, "counts": counts}


def _export(warehouse, tmp_path, fmt, name, *extra):
    out = tmp_path / name
    assert main(["crm-export", "--month", MONTH, "--format", fmt, "--out", str(out),
                 "--warehouse", str(warehouse), *extra]) == 0
    return out


def test_jsonl_export_validates_against_schema(demo_warehouse, tmp_path, mart):
    out = _export(demo_warehouse, tmp_path, "jsonl", "actions.jsonl")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    schema = json.loads(crm.SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for record in records:
        validator.validate(record)
    assert len(records) == len(mart["actions"]) > 0
    assert list(records[0]) == list(crm.EXPORT_COLUMNS) == schema["required"]
    # pseudonymous only: keys match the HMAC of the ids, and no customer id appears anywhere
    by_key = {customer_key(c): c for c in mart["actions"]["customer_id"]}
    assert {r["customer_key"] for r in records} <= set(by_key)
    assert not re.search(r"C\d{6}", out.read_text())
    assert {r["month"] for r in records} == {MONTH}


def test_csv_export_has_documented_columns_and_same_keys(demo_warehouse, tmp_path):
    csv_out = _export(demo_warehouse, tmp_path, "csv", "actions.csv")
    jsonl_out = _export(demo_warehouse, tmp_path, "jsonl", "actions.jsonl")
    with csv_out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == crm.EXPORT_COLUMNS
        rows = list(reader)
    records = [json.loads(line) for line in jsonl_out.read_text().splitlines()]
    assert [r["upsert_key"] for r in rows] == [r["upsert_key"] for r in records]
    schema = json.loads(crm.SCHEMA_PATH.read_text())
    for row in rows:  # CSV: empty field = null
        jsonschema.validate({k: (v if v != "" else None) for k, v in row.items()}, schema)


def test_reexport_is_idempotent(demo_warehouse, tmp_path):
    first = _export(demo_warehouse, tmp_path, "jsonl", "first.jsonl")
    again = _export(demo_warehouse, tmp_path, "jsonl", "again.jsonl")
    assert first.read_bytes() == again.read_bytes()
    keys = [json.loads(line)["upsert_key"] for line in first.read_text().splitlines()]
    assert len(keys) == len(set(keys))                  # one record per customer and action
    # the same customer and action keep their key in another month (upsert, not a new record)
    previous = _export_month(demo_warehouse, tmp_path, "2024-03")
    this = {(r["customer_key"], r["action"]): r["upsert_key"] for r in map(json.loads, first.read_text().splitlines())}
    shared = [(k, v) for k, v in previous.items() if k in this]
    assert shared and all(this[k] == v for k, v in shared)
    assert not list(tmp_path.glob(".*.tmp"))           # atomic write leaves no temporary file


def _export_month(warehouse, tmp_path, month):
    out = tmp_path / f"{month}.jsonl"
    assert main(["crm-export", "--month", month, "--format", "jsonl", "--out", str(out),
                 "--warehouse", str(warehouse)]) == 0
    return {(r["customer_key"], r["action"]): r["upsert_key"] for r in map(json.loads, out.read_text().splitlines())}


def test_contact_needs_pii_role(demo_warehouse, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(crm.PII_ENV, raising=False)
    out = tmp_path / "contact.csv"
    assert main(["crm-export", "--month", MONTH, "--format", "csv", "--out", str(out), "--include-contact",
                 "--warehouse", str(demo_warehouse)]) == 1
    assert f"set {crm.PII_ENV}=1" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setenv(crm.PII_ENV, "1")
    out = _export(demo_warehouse, tmp_path, "jsonl", "contact.jsonl", "--include-contact")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    schema = json.loads(crm.SCHEMA_PATH.read_text())
    for record in records:
        jsonschema.validate(record, schema)
    assert all(r["contact_email"] and "@" in r["contact_email"] for r in records)


def test_unknown_month_is_a_clear_error(demo_warehouse, tmp_path, capsys):
    assert main(["crm-export", "--month", "2023-01", "--format", "csv", "--out", str(tmp_path / "x.csv"),
                 "--warehouse", str(demo_warehouse)]) == 1
    assert f"no successful run of 2023-01 in {demo_warehouse}; run `tiering run --month 2023-01` first" \
        in capsys.readouterr().err


def test_actions_follow_the_policy(mart):
    actions, tiers = mart["actions"], mart["tiers"]
    by_action = {a: set(g["customer_id"]) for a, g in actions.groupby("action")}
    assert by_action.get("weekly_contact", set()) == set(tiers.loc[tiers["contact_cadence"] == "weekly", "customer_id"])
    assert by_action.get("twice_monthly_contact", set()) == set(
        tiers.loc[tiers["contact_cadence"] == "twice-monthly", "customer_id"])
    # every tier with a contact cadence (contact_days > 0) gets one contact action per customer and month
    assert by_action.get("monthly_contact", set()) == set(
        tiers.loc[tiers["contact_cadence"] == "monthly", "customer_id"])
    contacts = actions[actions["action"].str.endswith("_contact")]
    assert set(contacts["customer_id"]) == set(tiers.loc[tiers["contact_days"] > 0, "customer_id"])
    assert not contacts.duplicated(["customer_id"]).any()
    assert by_action.get("credit_hold", set()) == set(tiers.loc[tiers["credit_hold"], "customer_id"])
    assert by_action.get("win_back", set()) == set(tiers.loc[tiers["movement"] == "lapsed", "customer_id"])
    growth = mart["potential"]
    growth = growth[(growth["month"] == growth["month"].max()) & (growth["growth_candidate"] == True)]  # noqa: E712
    assert by_action.get("growth_outreach", set()) == set(growth["customer_id"])
    assert set(growth["value_tier"]) <= {"B", "C"} and set(growth["potential_tier"]) == {"A"}
    # potential: one row per customer-month of customer_tier_monthly, every month kept
    assert mart["counts"][0] == mart["counts"][1]
    assert (actions["due_date"].astype(str) >= "2024-05-01").all()
