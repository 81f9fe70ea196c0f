"""Personal data in free text, through the DAG (`tiering run`) and the warehouse tables:

- an override whose reason holds an e-mail address or a phone number is quarantined
  (personal_data_in_free_text), never reaching the marts BI reads;
- an override's approver appears in the marts, the published copy, audit and PostgreSQL's bi and
  audit as a pseudonymous key only; PostgreSQL's pii.approvers (writer only) maps it back;
- a failure message quoting an e-mail address or a phone number is scrubbed in audit.runs and
  audit.run_alerts, without touching the dates, run ids, counts and amounts around them, and
  scrubbed again when published to PostgreSQL.

Month 2024-01 of a hand-made source through the real DAG, publishing to a fresh PostgreSQL database
when one is reachable (the PostgreSQL tests skip otherwise), and a failing 2024-02 run.
"""
from __future__ import annotations

import os
import shutil

import duckdb
import pytest

from tests.fixtures.sources import customer, order, write_source
from tests.fixtures.warehouse import query as _rows
from tests.integration.test_pg_publish import _pg_rows, drop_test_database, make_test_database
from tiering import pg_publish
from tiering.cli import main
from tiering.pseudonym import approver_key
from tiering.publish import published_path

CUSTOMER_EMAIL = "jane.doe@example.com"
PHONE = "+31 6 12345678"
APPROVER = "approver.one@example.com"
REJECTED = {"OV1": f"strategic partner, agreed with {CUSTOMER_EMAIL}",
            "OV2": f"call back on {PHONE} before the review",
            "OV3": "see (020) 7946 0958"}
# ordinary numbers are no phone: the override is kept
KEPT_REASON = "key reseller, contract 2024-01-15 ref 1234567, 12345.67 EUR a year"
# a source directory whose name a failure message quotes, with ordinary numbers around the contact data
FAILING_DIR = (f"export {CUSTOMER_EMAIL} {PHONE} 2024-01-31 run 202401-20261207T045512-ab12cd "
               f"1234567 rows 12345.67 EUR")


def _override(override_id: str, customer_id: str, reason: str) -> dict:
    return {"override_id": override_id, "customer_id": customer_id, "tier": "A", "reason": reason,
            "approver": APPROVER, "valid_from": "2024-01", "valid_until": "", "updated_at": "2024-01-05T09:00:00"}


@pytest.fixture(scope="module")
def pg():
    """A fresh PostgreSQL database with the migration applied, or None without PostgreSQL."""
    try:
        dbname, dsn_for = make_test_database("tiering_test_pii")
    except pytest.skip.Exception:
        yield None
        return
    try:
        yield dsn_for
    finally:
        drop_test_database(dbname)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pg):
    """2024-01 through the DAG (published to PostgreSQL when there is one), then a failing 2024-02."""
    base = tmp_path_factory.mktemp("pii")
    customers = [customer(f"C{i}") for i in range(1, 6)]
    orders = [order(f"O{i}", f"C{i}", f"{100 * i}.00") for i in range(1, 6)]
    overrides = [_override(oid, f"C{i}", reason) for i, (oid, reason) in enumerate(REJECTED.items(), 1)]
    overrides.append(_override("OV4", "C4", KEPT_REASON))
    # overrides for later months, so that the rejected ones stay within the staging gate's
    # max_quarantined_share (a table mostly quarantined is a broken batch)
    overrides += [{**_override(f"OV{n}", "C5", "approved for later"), "valid_from": "2030-01"} for n in range(5, 21)]
    # rejected for another reason: the quarantine reason is the rule's message, not the override's reason
    overrides.append(_override("OVX", "C99", "no such customer"))
    source = write_source(base / "source", customers=customers, orders=orders, tier_overrides=overrides)
    warehouse = base / "wh" / "tiering.duckdb"
    saved = {k: os.environ.get(k) for k in (pg_publish.DSN_ENV, pg_publish.LEGACY_DSN_ENV)}
    os.environ.pop(pg_publish.LEGACY_DSN_ENV, None)
    if pg:
        os.environ[pg_publish.DSN_ENV] = pg("tiering_writer")
    else:
        os.environ.pop(pg_publish.DSN_ENV, None)
    try:
        assert main(["run", "--source", str(source), "--month", "2024-01", "--warehouse", str(warehouse)]) == 0
        # the same source, but orders.csv lacks updated_at: extract_and_land fails quoting the file's path
        failing = base / FAILING_DIR
        shutil.copytree(source, failing)
        orders_csv = failing / "orders.csv"
        lines = orders_csv.read_text().splitlines()
        dropped = lines[0].split(",").index("updated_at")
        orders_csv.write_text("\n".join(",".join(v for i, v in enumerate(line.split(",")) if i != dropped)
                                        for line in lines) + "\n")
        assert main(["run", "--source", str(failing), "--month", "2024-02", "--warehouse", str(warehouse)]) == 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {"warehouse": warehouse, "failing": failing, "source": source}


def test_override_with_contact_details_in_its_reason_is_quarantined(runs):
    warehouse = runs["warehouse"]
    rejected = _rows(warehouse, """
        select json_extract_string(record, '$.override_id'), rule, reason, json_extract_string(record, '$.reason')
        from quarantine.rejected_rows where source_table = 'tier_overrides' order by 1""")
    assert [(r[0], r[1]) for r in rejected] == [*((oid, "personal_data_in_free_text") for oid in REJECTED),
                                                ("OVX", "unknown_customer")]
    for _, _, reason, original in rejected[:-1]:
        assert reason == ("'reason' holds personal data (an e-mail address or phone number): "
                          "write it without contact details")
        assert original is None     # the quarantine record leaves the free text out: it may hold personal data
    assert rejected[-1][2:] == ("unknown customer 'C99' as of the end of the month computed", None)
    records = [r[0] for r in _rows(warehouse, "select record from quarantine.rejected_rows")]
    assert not [r for r in records if CUSTOMER_EMAIL in r or PHONE in r or "7946" in r]
    assert _rows(warehouse, "select override_id from intermediate.int_tier_overrides__as_of "
                            "where valid_from_month = date '2024-01-01'") == [("OV4",)]
    tiers = _rows(warehouse, """select customer_id, is_overridden, override_reason from marts.customer_tier_monthly
                                where month = date '2024-01-01' order by customer_id""")
    assert tiers == [("C1", False, None), ("C2", False, None), ("C3", False, None), ("C4", True, KEPT_REASON),
                     ("C5", False, None)]


# paths the operator chose (audit.runs): the failing run's source directory holds contact data on purpose
PATH_COLUMNS = ("source_dir", "landing_dir")


def _text_values(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...]) -> list[str]:
    """Every text value of every table in the schemas, but the PATH_COLUMNS."""
    values = []
    for schema, table, column in con.execute(f"""
            select table_schema, table_name, column_name from information_schema.columns
            where table_schema in {schemas} and column_name not in {PATH_COLUMNS}
              and data_type = 'VARCHAR' and table_catalog = current_database()
            """).fetchall():
        values += [r[0] for r in con.execute(f'select distinct "{column}" from {schema}."{table}" '
                                             f'where "{column}" is not null').fetchall()]
    return values


def test_approver_is_a_pseudonymous_key_in_marts_audit_and_the_published_copy(runs):
    warehouse = runs["warehouse"]
    key = approver_key(APPROVER)
    assert key.startswith("a_") and key == approver_key(f"  {APPROVER.upper()} ")
    assert _rows(warehouse, """select customer_id, override_approved_by_key from marts.customer_tier_monthly
                               where is_overridden""") == [("C4", key)]
    assert _rows(warehouse, """select customer_id, override_approved_by_key from audit.customer_tier_results
                               where is_overridden""") == [("C4", key)]
    for path in (warehouse, published_path(warehouse)):
        con = duckdb.connect(str(path), read_only=True)
        try:
            values = _text_values(con, ("marts", "audit") if path == warehouse else ("marts", "marts"))
        finally:
            con.close()
        assert key in values
        assert not [v for v in values if "@" in v or PHONE in v], path


def test_failure_messages_are_scrubbed_and_keep_ordinary_numbers(runs):
    warehouse, failing = runs["warehouse"], runs["failing"]
    (message,) = _rows(warehouse, "select message from audit.runs where status = 'failed'")[0]
    alerts = [r[0] for r in _rows(warehouse, "select message from audit.run_alerts")]
    assert alerts == [message]
    assert message.startswith("extract_and_land: ") and "missing column(s) updated_at" in message
    assert CUSTOMER_EMAIL not in message and PHONE not in message
    assert message.count("<email>") == 1 and message.count("<phone>") == 1
    # nothing else in the message changed: the path with its date, run id, count and amount is intact
    assert str(failing).replace(CUSTOMER_EMAIL, "<email>").replace(PHONE, "<phone>") in message


@pytest.mark.postgres
def test_postgres_bi_and_audit_show_the_approver_key_and_pii_maps_it_back(runs, pg):
    import psycopg

    if pg is None:
        pytest.skip("no PostgreSQL")
    key = approver_key(APPROVER)
    for role, table in (("tiering_bi_reader", "bi.customer_tier_monthly"),
                        ("tiering_auditor", "audit.customer_tier_results")):
        assert _pg_rows(pg(role), f"select customer_id, override_approved_by_key from {table} "
                                  f"where is_overridden") == [("C4", key)]
    # no e-mail address anywhere in bi or audit
    columns = _pg_rows(pg("tiering_auditor"), """
        select table_schema, table_name, column_name from information_schema.columns
        where table_schema in ('bi', 'audit') and data_type = 'text' and column_name <> all(%s)""",
                       (list(PATH_COLUMNS),))
    with psycopg.connect(pg("tiering_auditor")) as con:
        for schema, table, column in columns:
            found = con.execute(f'select count(*) from {schema}."{table}" where "{column}" like %s',
                                ["%@%"]).fetchone()[0]
            assert found == 0, f"{schema}.{table}.{column}"
    assert _pg_rows(pg("tiering_writer"), "select approver_key, approver from pii.approvers") == [(key, APPROVER)]
    for reader in ("tiering_bi_reader", "tiering_auditor"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema pii"):
            _pg_rows(pg(reader), "select * from pii.approvers")


@pytest.mark.postgres
def test_postgres_audit_messages_are_scrubbed_when_published(runs, pg):
    if pg is None:
        pytest.skip("no PostgreSQL")
    warehouse = runs["warehouse"]
    # a message written before messages were scrubbed at the source
    raw = f"gate_marts: row C1 ({CUSTOMER_EMAIL}, {PHONE}) failed on 2024-01-31 in run 202401-20261207T045512-ab12cd"
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("insert into audit.run_alerts values ('202401-old', date '2024-01-01', 'gate_marts', ?, "
                    "timestamp '2024-02-01 00:00:00')", [raw])
    finally:
        con.close()
    assert main(["publish-postgres", "--month", "2024-01", "--warehouse", str(warehouse),
                 "--dsn", pg("tiering_writer")]) == 0
    published = [r[0] for r in _pg_rows(pg("tiering_auditor"), "select message from audit.run_alerts order by 1")]
    assert "gate_marts: row C1 (<email>, <phone>) failed on 2024-01-31 in run 202401-20261207T045512-ab12cd" \
        in published
    runs_messages = _pg_rows(pg("tiering_auditor"), "select message from audit.runs where status = 'failed'")
    assert len(runs_messages) == 1 and "<email>" in runs_messages[0][0] and "@" not in runs_messages[0][0]


OLD_SHAPE_TABLES = ("intermediate.int_customer_tier_months", "audit.customer_tier_results")


def test_a_warehouse_holding_approvers_is_migrated_to_keys(runs, tmp_path):
    """A warehouse made when the kept-per-month models held the approver itself: the next run
    replaces it by its key and adds the key to the mart's earlier months."""
    shutil.copytree(runs["warehouse"].parent, tmp_path / "wh")   # with its landing and published copy
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    con = duckdb.connect(str(warehouse))
    try:
        for table in OLD_SHAPE_TABLES:
            con.execute(f"alter table {table} add column override_approver varchar")
            con.execute(f"update {table} set override_approver = ? where override_approved_by_key is not null",
                        [APPROVER])
            con.execute(f"alter table {table} drop column override_approved_by_key")
        con.execute("alter table marts.customer_tier_monthly drop column override_approved_by_key")
    finally:
        con.close()
    assert main(["run", "--source", str(runs["source"]), "--month", "2024-02", "--warehouse", str(warehouse)]) == 0
    key = approver_key(APPROVER)
    for table in (*OLD_SHAPE_TABLES, "marts.customer_tier_monthly"):
        assert _rows(warehouse, f"""select count(*) from information_schema.columns
                                    where table_schema || '.' || table_name = '{table}'
                                      and column_name = 'override_approver'""") == [(0,)]
        assert _rows(warehouse, f"""select strftime(month, '%Y-%m'), customer_id, override_approved_by_key
                                    from {table} where is_overridden order by month""") == \
            [("2024-01", "C4", key), ("2024-02", "C4", key)]
    con = duckdb.connect(str(published_path(warehouse)), read_only=True)
    try:
        assert con.execute("select distinct override_approved_by_key from marts.customer_tier_monthly "
                           "where is_overridden").fetchall() == [(key,)]
    finally:
        con.close()


@pytest.mark.postgres
def test_postgres_audit_holding_approvers_is_migrated_to_keys(runs, pg):
    import psycopg

    if pg is None:
        pytest.skip("no PostgreSQL")
    with psycopg.connect(pg("tiering_writer"), autocommit=True) as con:   # as published before
        con.execute("alter table audit.customer_tier_results add column override_approver text")
        con.execute("update audit.customer_tier_results set override_approver = %s "
                    "where override_approved_by_key is not null", [APPROVER])
        con.execute("alter table audit.customer_tier_results drop column override_approved_by_key")
    assert main(["publish-postgres", "--month", "2024-01", "--warehouse", str(runs["warehouse"]),
                 "--dsn", pg("tiering_writer")]) == 0
    assert _pg_rows(pg("tiering_auditor"), "select count(*) from information_schema.columns "
                                           "where column_name = 'override_approver'") == [(0,)]
    assert _pg_rows(pg("tiering_auditor"), "select customer_id, override_approved_by_key "
                                           "from audit.customer_tier_results where is_overridden") == \
        [("C4", approver_key(APPROVER))]
