"""Publishing a month to PostgreSQL: rows equal DuckDB's, idempotent, atomic, pseudonymous, skippable.

Real PostgreSQL (TIERING_BI_ADMIN_DSN, default postgresql://postgres@127.0.0.1:5432/postgres): one
database with a unique name for this module, created with the project's migration
(deploy/postgres/init/01_roles.sql via tiering.pg_publish.ensure_database) and dropped afterwards.
Reads the session's `demo_warehouse` (never writes it).
"""
from __future__ import annotations

import json
import os
import uuid
from datetime import date
from pathlib import Path

import pytest

from tiering import pg_publish
from tiering.errors import TieringError
from tiering.pseudonym import customer_key
from tiering.runspec import RunSpec
from tiering.warehouse import connect

MARCH, APRIL = date(2024, 3, 1), date(2024, 4, 1)


def _admin_dsn() -> str:
    return os.environ.get(pg_publish.ADMIN_DSN_ENV) or pg_publish.DEFAULT_ADMIN_DSN


def make_test_database(prefix: str):
    """(dbname, dsn_for(user)) of a fresh database with the migration applied; skips without PostgreSQL."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    admin = _admin_dsn()
    try:
        pg_publish._check_reachable(admin)
        psycopg.connect(admin, connect_timeout=5).close()
    except (pg_publish.NotReachable, psycopg.OperationalError) as exc:
        pytest.skip(f"no PostgreSQL as admin at {pg_publish.redact(admin)} ({exc}); "
                    f"set {pg_publish.ADMIN_DSN_ENV} to a superuser DSN to run these tests")
    dbname = f"{prefix}_{uuid.uuid4().hex[:8]}"
    pg_publish.ensure_database(dbname, admin)
    return dbname, lambda user=None: make_conninfo(admin, dbname=dbname, **({"user": user} if user else {}))


def drop_test_database(dbname: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_admin_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))


@pytest.fixture(scope="module")
def pg(demo_warehouse):
    """A test database with 2024-03 and 2024-04 published as tiering_writer."""
    dbname, dsn_for = make_test_database("tiering_test_publish")
    try:
        results = {m: pg_publish.publish(demo_warehouse, m, dsn_for("tiering_writer")) for m in (MARCH, APRIL)}
        yield {"dsn_for": dsn_for, "results": results}
    finally:
        drop_test_database(dbname)


def _pg_rows(dsn: str, query: str, params=()) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn) as con:
        return con.execute(query, params).fetchall()


def _duck_rows(warehouse, query: str, params=()) -> list[tuple]:
    con = connect(warehouse, read_only=True)
    try:
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


def _columns(warehouse, schema: str, table: str) -> list[str]:
    return [r[0] for r in _duck_rows(warehouse, "select column_name from information_schema.columns where "
                                     "table_schema = ? and table_name = ? order by ordinal_position",
                                     (schema, table))]


@pytest.mark.postgres
def test_the_months_rows_equal_duckdbs(pg, demo_warehouse):
    dsn = pg["dsn_for"]("tiering_writer")
    columns = ", ".join(_columns(demo_warehouse, "marts", "customer_tier_monthly"))
    for month in (MARCH, APRIL):
        expected = _duck_rows(demo_warehouse, f"select {columns} from marts.customer_tier_monthly "
                                              "where month = ? order by customer_id", (month,))
        published = _pg_rows(dsn, f"select {columns} from bi.customer_tier_monthly "
                                  "where month = %s order by customer_id", (month,))
        assert len(expected) > 100
        assert published == expected
    # every bi table holds exactly DuckDB's rows (month-keyed: both months; others: whole)
    for (table,) in _duck_rows(demo_warehouse, "select table_name from information_schema.tables "
                                               "where table_schema = 'marts'"):
        month_keyed = "month" in _columns(demo_warehouse, "marts", table)
        where = "where month in (date '2024-03-01', date '2024-04-01')" if month_keyed else ""
        assert _pg_rows(dsn, f"select count(*) from bi.{table} {where}") == \
            _duck_rows(demo_warehouse, f"select count(*) from marts.{table} {where}"), table
    run_id = pg["results"][APRIL]["run_id"]
    assert _pg_rows(dsn, "select count(*), count(distinct customer_id) from audit.customer_tier_results "
                         "where run_id = %s", (run_id,)) == \
        _duck_rows(demo_warehouse, "select count(*), count(distinct customer_id) "
                                   "from audit.customer_tier_results where run_id = ?", (run_id,))
    assert _pg_rows(dsn, "select run_id, month, status from audit.runs order by run_id") == \
        _duck_rows(demo_warehouse, "select run_id, month, status from audit.runs order by run_id")
    assert pg["results"][APRIL]["rows"]["bi.customer_tier_monthly"] == len(expected)
    # what each published run read: its change-log partition versions, as its landing manifest names them
    for month in (MARCH, APRIL):
        run_id = pg["results"][month]["run_id"]
        (manifest_path,) = _duck_rows(demo_warehouse, "select landing_dir from audit.runs where run_id = ?",
                                      (run_id,))[0]
        manifest = json.loads(Path(manifest_path).read_text())
        expected = sorted((table, partition, v["version"], v["rows"], v["hash"])
                          for table, t in manifest["tables"].items() for partition, v in t["partitions"].items())
        assert _pg_rows(dsn, "select source_table, landing_partition, version, rows, content_hash "
                             "from audit.run_partitions where run_id = %s and month = %s order by 1, 2",
                        (run_id, month)) == expected
        assert expected and all(p <= f"{month:%Y-%m}" or p == "unparseable" for _, p, *_ in expected)


@pytest.mark.postgres
def test_bi_and_pii_carry_a_stable_pseudonymous_key(pg, demo_warehouse):
    dsn = pg["dsn_for"]("tiering_writer")
    keys = _pg_rows(dsn, """select m.customer_id, m.customer_key, a.customer_key, p.customer_key
                            from bi.customer_tier_monthly m
                            join bi.customer_tier_monthly a on a.customer_id = m.customer_id and a.month = %s
                            join pii.customers p on p.customer_id = m.customer_id
                            where m.month = %s""", (APRIL, MARCH))
    assert len(keys) > 100
    for customer_id, march_key, april_key, pii_key in keys:
        assert march_key == april_key == pii_key == customer_key(customer_id)
        assert march_key.startswith("k_") and customer_id not in march_key
    assert len({k[1] for k in keys}) == len(keys)          # one key per customer
    # pii holds the latest contact data of every customer of the month, as of the month end
    assert _pg_rows(dsn, "select count(*) from pii.customers where email like '%%@%%'") == \
        _duck_rows(demo_warehouse, "select count(distinct customer_id) from marts.customer_tier_monthly "
                                   "where month = ?", (APRIL,))


@pytest.mark.postgres
def test_no_personal_data_in_bi_or_audit(pg):
    dsn = pg["dsn_for"]("tiering_writer")
    columns = _pg_rows(dsn, "select table_schema, table_name, column_name, data_type "
                            "from information_schema.columns where table_schema in ('bi', 'audit')")
    assert {(s, t) for s, t, _, _ in columns} >= {("bi", "customer_tier_monthly"), ("audit", "runs")}
    assert not [c for c in columns if c[2] in {"name", "email", "phone"}]
    contact = "select name from pii.customers union select email from pii.customers union " \
              "select phone from pii.customers"
    for schema, table, column, data_type in columns:
        if data_type in ("text", "jsonb"):
            found = _pg_rows(dsn, f'select count(*) from {schema}.{table} where "{column}"::text in ({contact})')
            assert found == [(0,)], (schema, table, column)


@pytest.mark.postgres
def test_republishing_a_month_is_idempotent(pg, demo_warehouse):
    dsn = pg["dsn_for"]("tiering_writer")
    counts = {t: _pg_rows(dsn, f"select count(*) from {t}")
              for t in ("bi.customer_tier_monthly", "bi.customer_tier_history", "bi.tier_policy", "audit.runs",
                        "audit.customer_tier_results", "audit.dq_results", "pii.customers")}
    april = _pg_rows(dsn, "select * from bi.customer_tier_monthly where month = %s order by customer_id", (APRIL,))
    result = pg_publish.publish(demo_warehouse, MARCH, dsn)
    assert result["run_id"] == pg["results"][MARCH]["run_id"]
    assert {t: _pg_rows(dsn, f"select count(*) from {t}") for t in counts} == counts
    assert _pg_rows(dsn, "select * from bi.customer_tier_monthly where month = %s order by customer_id",
                    (APRIL,)) == april
    assert _pg_rows(dsn, "select count(*) from pg_tables where schemaname in ('bi', 'audit', 'pii')") == \
        [(len(result["rows"]),)]


@pytest.mark.postgres
def test_a_failing_swap_leaves_the_previous_month_intact(pg, demo_warehouse, monkeypatch):
    """All tables of the month are swapped in one transaction: a failure in the last one rolls back all."""
    import psycopg

    dsn = pg["dsn_for"]("tiering_writer")
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("update bi.customer_tier_monthly set final_tier = 'X' where month = %s", (MARCH,))
    real_swap = pg_publish._swap

    def swap_then_fail(con, table, *args):
        real_swap(con, table, *args)
        if table.target == "pii.customers":   # after bi and audit were swapped
            raise psycopg.errors.QueryCanceled("simulated failure during the swap")

    monkeypatch.setattr(pg_publish, "_swap", swap_then_fail)
    with pytest.raises(TieringError, match="publishing 2024-03 to PostgreSQL failed: QueryCanceled"):
        pg_publish.publish(demo_warehouse, MARCH, dsn)
    marked = "select count(*) from bi.customer_tier_monthly where month = %s and final_tier = 'X'"
    total = _duck_rows(demo_warehouse, "select count(*) from marts.customer_tier_monthly where month = ?", (MARCH,))
    assert _pg_rows(dsn, marked, (MARCH,)) == total      # nothing of the failed swap is visible
    monkeypatch.setattr(pg_publish, "_swap", real_swap)
    pg_publish.publish(demo_warehouse, MARCH, dsn)
    assert _pg_rows(dsn, marked, (MARCH,)) == [(0,)]


@pytest.mark.postgres
def test_configured_but_failing_is_an_error(pg, demo_warehouse):
    from psycopg.conninfo import make_conninfo

    reader = pg["dsn_for"]("tiering_bi_reader")
    with pytest.raises(TieringError, match="publishing 2024-03 to PostgreSQL failed: .*(ReadOnly|Privilege)"):
        pg_publish.publish(demo_warehouse, MARCH, reader)
    missing = make_conninfo(pg["dsn_for"]("tiering_writer"), dbname="tiering_no_such_db")
    with pytest.raises(TieringError, match="does not exist.*TIERING_BI_ADMIN_DSN"):
        pg_publish.publish(demo_warehouse, MARCH, missing)


def test_without_postgresql_the_step_is_skipped_with_a_reason(demo_warehouse, monkeypatch, caplog):
    """No PostgreSQL configured, or none reachable: the DAG step skips (never fails) and says what to set."""
    for env in (pg_publish.DSN_ENV, pg_publish.LEGACY_DSN_ENV, pg_publish.ADMIN_DSN_ENV, "AIRFLOW_CONN_TIERING_BI"):
        monkeypatch.delenv(env, raising=False)
    spec = RunSpec(month=MARCH, run_id="r", source_dir=demo_warehouse.parent, warehouse=demo_warehouse)
    result = pg_publish.publish_month(spec)
    assert "no PostgreSQL configured: set TIERING_BI_DSN" in result["skipped"]
    monkeypatch.setenv(pg_publish.DSN_ENV, "postgresql://tiering_writer@127.0.0.1:1/tiering")
    result = pg_publish.publish_month(spec)
    assert "no PostgreSQL answers at 127.0.0.1:1" in result["skipped"]
    assert "publish_postgres skipped: no PostgreSQL answers" in caplog.text   # a WARNING in the task / run log


def test_failure_callback_logs_records_an_alert_and_posts_the_webhook(tmp_path, monkeypatch, caplog):
    """on_task_failure: ERROR line, a row in audit.run_alerts, run marked failed, Slack-style POST if configured."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from types import SimpleNamespace

    from tiering.airflow_tasks import on_task_failure, send_webhook_alert
    from tiering.warehouse import ensure_schema

    warehouse = tmp_path / "tiering.duckdb"
    con = connect(warehouse)
    ensure_schema(con)
    con.execute("insert into audit.runs (run_id, month, status) values ('r1', date '2024-03-01', 'running')")
    con.close()
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    monkeypatch.setenv("TIERING_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
    run = {"run_id": "r1", "month": "2024-03", "warehouse": str(warehouse), "source_dir": str(tmp_path)}
    ti = SimpleNamespace(task_id="gate_marts", xcom_pull=lambda task_ids: run)
    on_task_failure({"ti": ti, "dag_run": SimpleNamespace(conf=run), "exception": ValueError("3 expectations failed")})
    server.server_close()

    assert "ALERT customer tiering run r1 (month 2024-03) failed in task gate_marts" in caplog.text
    assert _duck_rows(warehouse, "select run_id, month, task, message from audit.run_alerts") == \
        [("r1", MARCH, "gate_marts", "gate_marts: 3 expectations failed")]
    assert _duck_rows(warehouse, "select status from audit.runs") == [("failed",)]
    assert received and "failed in gate_marts: gate_marts: 3 expectations failed" in received[0]["text"]
    # off by default; an unreachable hook never raises
    monkeypatch.delenv("TIERING_ALERT_WEBHOOK")
    assert send_webhook_alert("r1", "2024-03", "t", "m") is False
    monkeypatch.setenv("TIERING_ALERT_WEBHOOK", "http://127.0.0.1:1/hook")
    assert send_webhook_alert("r1", "2024-03", "t", "m") is False


def test_publish_postgres_reads_the_months_last_successful_run(demo_warehouse, tmp_path, capsys):
    """`tiering publish-postgres` publishes the month's last successful run (audit.runs), refusing
    before it looks for PostgreSQL when the month has none or when the marts hold another run."""
    import shutil

    from tiering.cli import main

    shutil.copytree(demo_warehouse.parent, tmp_path / "wh", ignore=shutil.ignore_patterns("landing", "gx_docs"))
    warehouse = tmp_path / "wh" / demo_warehouse.name
    nowhere = ["--dsn", "postgresql://nobody@127.0.0.1:1/none", "--warehouse", str(warehouse)]
    con = connect(warehouse)
    con.execute("update audit.runs set status = 'failed' where month = date '2024-03-01'")
    [(april,)] = con.execute("select distinct run_id from marts.customer_tier_monthly "
                             "where month = date '2024-04-01'").fetchall()
    con.execute("insert into audit.runs (run_id, month, status, started_at, finished_at) values "
                "('202404-later', date '2024-04-01', 'success', now(), now() + interval 1 day)")
    con.close()
    assert main(["publish-postgres", "--month", "2024-03", *nowhere]) == 1
    assert capsys.readouterr().err.strip() == (f"tiering: error: no successful run of 2024-03 in {warehouse}; "
                                               f"run `tiering run --month 2024-03` first")
    assert main(["publish-postgres", "--month", "2024-04", *nowhere]) == 1
    assert capsys.readouterr().err.strip() == (
        f"tiering: error: the marts of {warehouse} hold run {april} of 2024-04, not 202404-later (its last "
        f"successful run); run `tiering run --month 2024-04` again")
