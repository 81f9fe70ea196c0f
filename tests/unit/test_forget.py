"""`tiering forget` and the personal change log, on the landing alone (no dbt): a hand-made source
landed with tiering.landing, a person forgotten, then landed again every way the landing can write
personal partitions (an unchanged or re-exported source, a new month, a --restate, the partition
`unparseable`). The whole pipeline with PostgreSQL: tests/integration/test_forget.py."""
from __future__ import annotations

import csv
import hashlib
import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.fixtures.sources import customer, order, write_source
from tiering import forget, landing, pg_publish
from tiering.cli import main
from tiering.personal import (
    FORGET_LIST,
    ForgetListError,
    add_to_forget_list,
    contact_sql,
    forgotten_keys,
    personal_file,
    personal_files,
)
from tiering.pseudonym import KEY_ENV, customer_key
from tiering.runspec import RunSpec, parse_month
from tiering.settings import landing_root
from tiering.warehouse import connect, ensure_schema

ADA_OLD, ADA_NEW, ADA_LATER = "ada.lovelace@example.com", "ada.l@example.org", "ada.again@example.net"
ADA_PHONE = "+31 6 11112222"


def _customers(bob_region: str = "North", unparseable_note: str = "x") -> list[dict]:
    return [
        customer("C1", updated="2024-01-05T10:00:00", name="Ada Lovelace", email=ADA_OLD, phone=ADA_PHONE),
        customer("C1", updated="2024-02-10T10:00:00", name="Ada Lovelace", email=ADA_NEW, phone=ADA_PHONE),
        customer("C2", region=bob_region, updated="2024-01-06T10:00:00", name="Bob Stone", email="bob@example.com"),
        # an updated_at that cannot be read: partition `unparseable`, re-landed whenever it differs
        customer("C1", updated="not a date", industry=unparseable_note, name="Ada Lovelace", email=ADA_OLD),
    ]


def _write(source: Path, customers: list[dict]) -> Path:
    return write_source(source, customers=customers, orders=[order("O1", "C1", "10.00")])


def _land(warehouse: Path, source: Path, month: str, n: int, restate: bool = False) -> dict:
    spec = RunSpec(month=parse_month(month), run_id=f"{month.replace('-', '')}-run{n}", source_dir=source,
                   warehouse=warehouse, restate=restate)
    return landing.extract_and_land(spec)


def _personal_rows(root: Path, customer_id: str) -> list[tuple]:
    files = [str(f) for f in personal_files(root)]
    return duckdb.sql(f"select name, email, phone, filename from read_parquet({files}, filename = true, "
                      f"hive_partitioning = false) where customer_id = '{customer_id}' order by all").fetchall()


def _digests(root: Path, pattern: str) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob(pattern))}


@pytest.fixture(autouse=True)
def no_postgres(monkeypatch):
    """No PostgreSQL (looking for an Airflow connection imports Airflow: seconds)."""
    monkeypatch.setattr(pg_publish, "resolve_dsn", lambda explicit=None: (None, ""))
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture
def landed(tmp_path):
    """2024-01 and 2024-02 landed (no warehouse file: the landing alone)."""
    source = _write(tmp_path / "source", _customers())
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    manifests = {m: _land(warehouse, source, m, 1) for m in ("2024-01", "2024-02")}
    return {"source": source, "warehouse": warehouse, "root": landing_root(warehouse), "manifests": manifests}


def test_contact_data_is_the_latest_version_as_of_the_month_end(landed):
    january = dict(duckdb.sql(f"select customer_id, email from ({contact_sql(landed['manifests']['2024-01'])})")
                   .fetchall())
    february = dict(duckdb.sql(f"select customer_id, email from ({contact_sql(landed['manifests']['2024-02'])})")
                    .fetchall())
    assert january == {"C1": ADA_OLD, "C2": "bob@example.com"}      # the unparseable version never counts
    assert february == {"C1": ADA_NEW, "C2": "bob@example.com"}
    # the personal files sit beside the customers files the manifest names, same partition and version
    entry = landed["manifests"]["2024-02"]["tables"]["customers"]["partitions"]["2024-02"]
    assert personal_file(entry["file"]) == \
        landed["root"] / "customers_personal" / "updated_month=2024-02" / "v1.parquet"


def test_forget_blanks_every_personal_file_and_nothing_else(landed):
    root = landed["root"]
    catalog, logs = (root / "_catalog.json").read_bytes(), _digests(root, "customers/*/*.parquet")
    bob_before = _personal_rows(root, "C2")
    erasure = forget.forget(landed["warehouse"], "C1")
    assert (erasure.landing_files, erasure.landing_rows) == (3, 3)   # 2024-01, 2024-02 and unparseable
    assert [r[:3] for r in _personal_rows(root, "C1")] == [(None, None, None)] * 3
    assert _personal_rows(root, "C2") == bob_before
    assert all(f.stat().st_mode & 0o777 == 0o444 for f in personal_files(root))
    assert not list(root.rglob(".*partial*"))
    # the change log proper, its catalog and so its fingerprints are untouched
    assert (root / "_catalog.json").read_bytes() == catalog
    assert _digests(root, "customers/*/*.parquet") == logs
    assert forgotten_keys(root) == {customer_key("C1")}
    assert "C1" not in (root / FORGET_LIST).read_text()             # the list holds keys, not ids
    # contact data of any month: none for C1 any more
    contacts = dict(duckdb.sql(f"select customer_id, email from ({contact_sql(landed['manifests']['2024-02'])})")
                    .fetchall())
    assert contacts == {"C1": None, "C2": "bob@example.com"}
    again = forget.forget(landed["warehouse"], "C1")
    assert (again.landing_files, again.newly_listed) == (0, False)
    assert "already on it" in forget.format_erasure(again, landed["warehouse"])


def test_landing_again_neither_restates_nor_brings_the_data_back(landed):
    root, source, warehouse = landed["root"], landed["source"], landed["warehouse"]
    forget.forget(warehouse, "C1")
    files = _digests(root, "*/*/*.parquet")
    # the same source, and a re-export in another row order (read and compared again): no restatement
    rerun = _land(warehouse, source, "2024-02", 2)
    assert rerun["tables"]["customers"]["landed"] == []
    rows = _customers()
    _write(source, rows[::-1])
    reexport = _land(warehouse, source, "2024-02", 3)
    assert reexport["tables"]["customers"]["source_read"] and reexport["tables"]["customers"]["landed"] == []
    assert _digests(root, "*/*/*.parquet") == files
    # a new month with a newer version of the person: landed without their personal data
    _write(source, [*rows, customer("C1", updated="2024-03-02T10:00:00", name="Ada Lovelace", email=ADA_LATER)])
    march = _land(warehouse, source, "2024-03", 4)
    assert march["tables"]["customers"]["landed"] == ["2024-03"]
    # a changed `unparseable` row, landed again silently
    _write(source, [*_customers(unparseable_note="y"),
                    customer("C1", updated="2024-03-02T10:00:00", name="Ada Lovelace", email=ADA_LATER)])
    assert _land(warehouse, source, "2024-03", 5)["tables"]["customers"]["landed"] == ["unparseable"]
    # a restatement of January (Bob moved): refused plainly, landed as v2 with --restate
    restated = [*_customers(bob_region="South", unparseable_note="y"),
                customer("C1", updated="2024-03-02T10:00:00", name="Ada Lovelace", email=ADA_LATER)]
    _write(source, restated)
    with pytest.raises(landing.SourceChangedError, match="customers: 1 month"):
        _land(warehouse, source, "2024-01", 6)
    assert _land(warehouse, source, "2024-01", 7, restate=True)["tables"]["customers"]["landed"] == ["2024-01"]
    ada = _personal_rows(root, "C1")
    assert len(ada) == 6 and {r[:3] for r in ada} == {(None, None, None)}
    assert {Path(r[3]).parent.name + "/" + Path(r[3]).name for r in ada} == {
        "updated_month=2024-01/v1.parquet", "updated_month=2024-01/v2.parquet", "updated_month=2024-02/v1.parquet",
        "updated_month=2024-03/v1.parquet", "updated_month=unparseable/v1.parquet",
        "updated_month=unparseable/v2.parquet"}
    assert {r[1] for r in _personal_rows(root, "C2")} == {"bob@example.com"}   # others land as they are


def test_a_forget_list_keyed_with_another_secret_refuses_to_land_personal_data(landed, monkeypatch):
    forget.forget(landed["warehouse"], "C1")
    monkeypatch.setenv(KEY_ENV, "another-secret")
    # nothing personal to land: the run is not concerned
    assert _land(landed["warehouse"], landed["source"], "2024-02", 2)["tables"]["customers"]["landed"] == []
    rows = [*_customers(), customer("C1", updated="2024-03-02T10:00:00", email=ADA_LATER)]
    _write(landed["source"], rows)
    with pytest.raises(ForgetListError, match="keyed with another TIERING_PSEUDONYM_KEY"):
        _land(landed["warehouse"], landed["source"], "2024-03", 3)
    assert not (landed["root"] / "customers_personal" / "updated_month=2024-03").exists()


def test_forget_masks_logs_and_gx_docs_in_place(landed):
    logs = landed["warehouse"].parent / "logs"
    logs.mkdir(parents=True)
    line = f"2024-02-01 ERROR row C1 {ADA_NEW} / {ADA_PHONE} / Ada Lovelace / ok\n"
    (logs / "tiering-1.log").write_text("a first line\n" + line)
    (logs / "tiering-2.log").write_text("nothing personal\n")
    docs = landed["warehouse"].parent / "gx_docs" / "202402-run1"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text(f"<td>{ADA_OLD.upper()}</td><td>{ADA_OLD}</td>")
    erasure = forget.forget(landed["warehouse"], "C1")
    assert erasure.log_files == 2
    masked = (logs / "tiering-1.log").read_text()
    assert len(masked) == len("a first line\n" + line)             # same length: appenders are not disturbed
    for value in (ADA_NEW, ADA_PHONE, "Ada Lovelace"):
        assert value not in masked
    assert masked.endswith("/ ok\n") and "row C1" in masked
    assert (logs / "tiering-2.log").read_text() == "nothing personal\n"
    assert (docs / "index.html").read_text() == f"<td>{'*' * len(ADA_OLD)}</td><td>{'*' * len(ADA_OLD)}</td>"


def test_forget_erases_what_a_warehouse_and_its_published_copy_hold(landed):
    """A warehouse with a personal column (as the old raw.customers had) and text quoting the person."""
    from tiering.publish import published_path

    con = connect(landed["warehouse"])
    ensure_schema(con)
    con.execute("create schema raw")
    con.execute("create table raw.customers as select * from (values ('C1', 'Ada Lovelace', ?, 'North'), "
                "('C2', 'Bob Stone', 'bob@example.com', 'North')) as t(customer_id, name, email, region)", [ADA_NEW])
    con.execute("create schema quarantine")
    con.execute("create table quarantine.rejected_rows (source_table varchar, record json)")
    con.execute("insert into quarantine.rejected_rows values ('customers', ?), ('orders', '{\"a\": 1}')",
                [json.dumps({"customer_id": "C1", "note": f"mail {ADA_NEW}"})])
    con.execute("insert into audit.runs (run_id, month, status, message) values "
                "('r1', date '2024-02-01', 'failed', ?)", [f"row of {ADA_NEW.upper()} / {ADA_NEW} failed"])
    con.close()
    published = published_path(landed["warehouse"])
    published.parent.mkdir(parents=True)
    con = duckdb.connect(str(published))
    con.execute("create schema marts")
    con.execute("create table marts.customer_tier_monthly as select 'C1' as customer_id, 'A' as final_tier")
    con.close()
    erasure = forget.forget(landed["warehouse"], "C1")
    assert erasure.warehouse == {"tables": ["raw.customers"], "columns": 1, "quoted": 2}
    assert erasure.published == {"tables": [], "columns": 0, "quoted": 0}
    con = connect(landed["warehouse"], read_only=True)
    try:
        assert con.execute("select * from raw.customers order by 1").fetchall() == [
            ("C1", None, None, "North"), ("C2", "Bob Stone", "bob@example.com", "North")]
        assert con.execute("select message from audit.runs").fetchall() == [
            (f"row of {forget.ERASED} / {forget.ERASED} failed",)]
        record = json.loads(con.execute("select record from quarantine.rejected_rows "
                                        "where source_table = 'customers'").fetchall()[0][0])
        assert record == {"customer_id": "C1", "note": f"mail {forget.ERASED}"}
    finally:
        con.close()
    summary = forget.format_erasure(erasure, landed["warehouse"])
    assert "1 row(s) blanked in raw.customers, 2 quoting value(s) replaced" in summary
    assert "published copy: no personal column" in summary and "PostgreSQL: not configured" in summary


def test_cli_forget_prints_one_line(landed, capsys):
    assert main(["forget", "--customer", "C1", "--warehouse", str(landed["warehouse"])]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"forgot C1 (key {customer_key('C1')}): landing 3 personal file(s)")
    assert main(["forget", "--customer", " ", "--warehouse", str(landed["warehouse"])]) == 1


def test_pii_rows_leave_forgotten_customers_out(landed, monkeypatch):
    """pg_publish._read_pii: contact data from the manifest of the run, without the forgotten."""
    warehouse = landed["warehouse"]
    con = connect(warehouse)
    ensure_schema(con)
    con.execute("insert into audit.runs (run_id, month, status, landing_dir) values (?, ?, 'success', ?)",
                ["202402-run1", date(2024, 2, 1), str(landed["root"] / "_runs" / "202402-run1.json")])
    try:
        before = pg_publish._read_pii(con, "202402-run1", pg_publish._CustomerKeys(con)).rows.to_pylist()
        assert {r["customer_id"]: r["email"] for r in before} == {"C1": ADA_NEW, "C2": "bob@example.com"}
        assert all(r["customer_key"] == customer_key(r["customer_id"]) for r in before)
        add_to_forget_list(landed["root"], "C1")     # (the warehouse is open here: the list alone)
        after = pg_publish._read_pii(con, "202402-run1", pg_publish._CustomerKeys(con)).rows.to_pylist()
        assert [r["customer_id"] for r in after] == ["C2"]
    finally:
        con.close()


def test_crm_contact_join_reads_the_personal_log(landed):
    """The CONTACT_JOIN of tiering.crm is valid SQL over the contact rows (the full export is tested
    in tests/integration/test_forget.py)."""
    from tiering.crm import CONTACT_JOIN

    sql = CONTACT_JOIN.format(contact_sql=contact_sql(landed["manifests"]["2024-02"]))
    rows = duckdb.sql(f"select actions.customer_id, contact.email from (select 'C1' as customer_id) as actions "
                      f"{sql}").fetchall()
    assert rows == [("C1", ADA_NEW)]


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_source_files_are_never_touched(landed):
    before = {p.name: p.read_bytes() for p in landed["source"].iterdir()}
    forget.forget(landed["warehouse"], "C1")
    assert {p.name: p.read_bytes() for p in landed["source"].iterdir()} == before
    assert any(r["email"] == ADA_NEW for r in _csv_rows(landed["source"] / "customers.csv"))
