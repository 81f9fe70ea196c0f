"""Least privilege in the BI warehouse: connect as each role and check what it can read and what it is refused.

    role               bi     audit   pii
    tiering_writer     read   read    read    (owner, writes all three)
    tiering_auditor    read   read    denied
    tiering_bi_reader  read   denied  denied
    anyone else        cannot even connect

Roles, schemas and grants come from deploy/postgres/init/01_roles.sql (the one migration), applied to a
database with a unique name by tiering.pg_publish.ensure_database; trust authentication on the test
server (connecting with user=ROLE), as on this machine.
"""
from __future__ import annotations

import uuid

import pytest

from tests.integration.test_pg_publish import APRIL, _admin_dsn, drop_test_database, make_test_database
from tiering import pg_publish

TABLES = {"bi": "bi.customer_tier_monthly", "audit": "audit.runs", "pii": "pii.customers"}
ALLOWED = {
    "tiering_writer": {"bi", "audit", "pii"},
    "tiering_auditor": {"bi", "audit"},
    "tiering_bi_reader": {"bi"},
}


@pytest.fixture(scope="module")
def db(demo_warehouse):
    dbname, dsn_for = make_test_database("tiering_test_roles")
    try:
        pg_publish.publish(demo_warehouse, APRIL, dsn_for("tiering_writer"))
        yield dsn_for
    finally:
        drop_test_database(dbname)


def _connect_as(dsn_for, role: str):
    import psycopg

    try:
        return psycopg.connect(dsn_for(role), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if "password" in str(exc):
            pytest.skip(f"cannot log in as {role} without its password (these tests expect trust auth): {exc}")
        raise


@pytest.mark.postgres
@pytest.mark.parametrize("role", sorted(ALLOWED))
@pytest.mark.parametrize("schema", sorted(TABLES))
def test_each_role_reads_only_its_schemas(db, demo_warehouse, role, schema):
    import psycopg

    with _connect_as(db, role) as con:
        query = f"select count(*) from {TABLES[schema]}"
        if schema in ALLOWED[role]:
            assert con.execute(query).fetchone()[0] > 0
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for schema {schema}"):
                con.execute(query)


@pytest.mark.postgres
@pytest.mark.parametrize("role", ["tiering_bi_reader", "tiering_auditor"])
def test_readers_cannot_write_or_create(db, role):
    """Read-only by default, and refused by the grants even when the reader switches that off."""
    import psycopg

    with _connect_as(db, role) as con:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            con.execute("delete from bi.customer_tier_monthly")
        con.execute("set default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table"):
            con.execute("delete from bi.customer_tier_monthly")
        for schema in ("bi", "public"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for schema {schema}"):
                con.execute(f"create table {schema}.mine (x int)")
        # unqualified names find bi first
        assert con.execute("select count(*) from customer_tier_monthly").fetchone()[0] > 0


@pytest.mark.postgres
def test_every_published_table_is_readable_as_the_matrix_says(db):
    """Default privileges: tables the writer creates later get the readers' grants without a manual GRANT."""
    with _connect_as(db, "tiering_writer") as writer:
        tables = writer.execute("select schemaname, tablename, tableowner from pg_tables "
                                "where schemaname in ('bi', 'audit', 'pii')").fetchall()
        assert {s for s, _, _ in tables} == {"bi", "audit", "pii"}
        assert {owner for _, _, owner in tables} == {"tiering_writer"}
        for role, schemas in ALLOWED.items():
            for schema, table, _ in tables:
                can = writer.execute("select has_schema_privilege(%s, %s, 'usage') "
                                     "and has_table_privilege(%s, %s, 'select')",
                                     (role, schema, role, f"{schema}.{table}")).fetchone()[0]
                assert can == (schema in schemas), (role, schema, table)


@pytest.mark.postgres
def test_other_roles_cannot_connect(db):
    """CONNECT on the database is revoked from PUBLIC: a role outside the three cannot even log in."""
    import psycopg
    from psycopg import sql

    role = f"tiering_test_nobody_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        try:
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(db(role), connect_timeout=5).close()
        finally:
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
