"""The pipeline on PostgreSQL, from the landed change log to the marts, gives DuckDB's results
(docs/portability.md).

The session's demo warehouse (150 customers, 4 months, built on DuckDB) is run again on PostgreSQL
by `python -m tiering.targets` in a process of its own: each month's landed Parquet files are
loaded with COPY, dbt builds staging, as-of and quarantine and then the rest (dbt build with every
data and unit test for the last month), and the marts and the quarantined rows are compared row
by row. The loader (files loaded once, a restated partition replaced) and the dialect macros of the
row rules are checked on their own, without dbt. Needs PostgreSQL (127.0.0.1:5432 by default,
TIERING_PG_*); skipped with the reason when it is not reachable.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import jinja2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiering import pii, targets
from tiering.settings import DBT_PROJECT_DIR
from tiering.source import SPECIAL_TIMESTAMPS, TABLES

pytestmark = pytest.mark.postgres


def run_on_target(target: str, warehouse, python: str = sys.executable, *extra: str) -> dict:
    """Run `python -m tiering.targets` and return its JSON summary (the last stdout line)."""
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}
    env.pop("TIERING_DBT_TARGET", None)
    proc = subprocess.run([python, "-m", "tiering.targets", "--target", target, "--warehouse", str(warehouse),
                           "--test-last-month-only", *extra],
                          capture_output=True, text=True, timeout=1800, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no summary from tiering.targets (exit {proc.returncode}): {proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def assert_same_as_duckdb(summary: dict, target: str, warehouse: Path, marts: set[str]) -> None:
    """Every compared mart and the quarantine equal, not empty; each landed file loaded once."""
    assert "error" not in summary, summary.get("error")
    assert set(summary["marts"]) == marts
    for table, result in summary["marts"].items():
        assert result["differences"] == [], (table, result["differences"])
        assert result["rows"] == result[f"{target}_rows"] > 0, table
    quarantine = summary["quarantine"]
    assert quarantine["differences"] == [], quarantine["differences"]
    assert quarantine["rows"] == quarantine[f"{target}_rows"] > 0
    assert summary["identical"] is True
    runs = [r for r in targets.month_runs(warehouse) if f"{r.month:%Y-%m}" in summary["months"]]
    files = {row[3] for run in runs for row in targets.run_partitions(run.manifest)}
    assert sum(b["landing"]["files"] for b in summary["builds"]) == len(files)


@pytest.fixture(scope="module")
def postgres():
    reason = targets.pg_reachable()
    if reason:
        pytest.skip(reason)


def test_pipeline_on_postgres_equals_duckdb(postgres, demo_warehouse):
    pytest.importorskip("dbt.adapters.postgres", reason="dbt-postgres is in the optional `postgres` group "
                                                         "(make test installs it)")
    summary = run_on_target("postgres", demo_warehouse)
    assert summary["months"] == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert [b["command"] for b in summary["builds"]] == ["run", "run", "run", "build"]
    assert_same_as_duckdb(summary, "postgres", demo_warehouse, set(targets.COMPARED_MARTS))
    # each month loads only the partitions it is the first to read (the demo restates nothing)
    assert all(b["landing"]["replaced"] == 0 for b in summary["builds"])
    assert all(b["landing"]["files"] > 0 for b in summary["builds"])
    # the demo warehouse holds 150 customers, not all known from the first month
    assert summary["marts"]["tier_summary_monthly"]["rows"] >= 4 * 3


# --- the loader --------------------------------------------------------------------------------

def _landed_file(path: Path, partition: str, rates: list[str]) -> str:
    """A landed fx_rates file (tiering.landing's layout) with one EUR-to-USD rate per row."""
    rows = len(rates)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"currency": ["USD"] * rows, "month": [partition] * rows, "rate_to_reporting": rates,
                             "_source_file": ["fx_rates.csv"] * rows, "_source_line": list(range(2, rows + 2)),
                             "landing_partition": [partition] * rows,
                             "_hash": pa.array(range(rows), pa.uint64())}), path)
    return str(path)


def _manifest(**partitions: tuple[int, str, int]) -> dict:
    """A run manifest reading fx_rates partitions {partition: (version, file, rows)} and no other table."""
    tables = {name: {"partitions": {}} for name in TABLES}
    tables["fx_rates"]["partitions"] = {p[1:].replace("_", "-"): {"version": v, "file": f, "rows": n, "hash": str(v)}
                                        for p, (v, f, n) in partitions.items()}
    return {"tables": tables}


@pytest.fixture
def landing_database(postgres, monkeypatch):
    """A database of its own for the loader tests, dropped afterwards."""
    monkeypatch.setenv("TIERING_PG_DBT_DATABASE", "tiering_dbt_test_landing")
    targets.pg_prepare()
    yield
    con = targets.pg_connect("postgres")
    con.autocommit = True
    try:
        con.execute("drop database if exists tiering_dbt_test_landing")
    finally:
        con.close()


def _landed_rows() -> list[tuple]:
    con = targets.pg_connect()
    try:
        return con.execute("select landing_partition, rate_to_reporting, landing_file from landing.fx_rates "
                           "order by landing_partition, _source_line").fetchall()
    finally:
        con.close()


def test_loader_copies_each_file_once_and_replaces_a_restated_partition(landing_database, tmp_path):
    jan_v1 = _landed_file(tmp_path / "fx_rates" / "rate_month=2024-01" / "v1.parquet", "2024-01", ["0.9", "0.91"])
    feb_v1 = _landed_file(tmp_path / "fx_rates" / "rate_month=2024-02" / "v1.parquet", "2024-02", ["0.92"])
    jan_v2 = _landed_file(tmp_path / "fx_rates" / "rate_month=2024-01" / "v2.parquet", "2024-01", ["0.95"])
    before = _manifest(p2024_01=(1, jan_v1, 2), p2024_02=(1, feb_v1, 1))
    restated = _manifest(p2024_01=(2, jan_v2, 1), p2024_02=(1, feb_v1, 1))

    assert targets.pg_load_landing(before) | {"seconds": 0} == {"files": 2, "rows": 3, "replaced": 0, "seconds": 0}
    assert _landed_rows() == [("2024-01", "0.9", jan_v1), ("2024-01", "0.91", jan_v1), ("2024-02", "0.92", feb_v1)]
    assert targets.pg_load_landing(before)["files"] == 0          # loaded already: nothing copied

    # a restatement's run reads v2 of January: its rows replace v1's; February stays
    assert targets.pg_load_landing(restated) == {"files": 1, "rows": 1, "replaced": 1}
    assert _landed_rows() == [("2024-01", "0.95", jan_v2), ("2024-02", "0.92", feb_v1)]
    con = targets.pg_connect()
    try:
        assert con.execute("select table_name, landing_partition, version, landing_file, rows from landing.partitions "
                           "order by 2").fetchall() == [("fx_rates", "2024-01", 2, jan_v2, 1),
                                                        ("fx_rates", "2024-02", 1, feb_v1, 1)]
    finally:
        con.close()
    # a month computed before the restatement, run again in its turn, reads v1 again
    assert targets.pg_load_landing(before) == {"files": 1, "rows": 2, "replaced": 1}
    assert [r[1] for r in _landed_rows()] == ["0.9", "0.91", "0.92"]

    # a file that is not what the manifest says fails, naming it
    changed = _manifest(p2024_01=(3, _landed_file(tmp_path / "v3.parquet", "2024-01", ["1"]), 5))
    with pytest.raises(targets.TargetError, match="v3.parquet: 1 rows, but the landing manifest says 5"):
        targets.pg_load_landing(changed)
    assert [r[1] for r in _landed_rows()] == ["0.9", "0.91", "0.92"]      # one transaction: nothing changed


def test_a_month_without_its_landing_manifest_is_named(tmp_path):
    warehouse = tmp_path / "tiering.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute("create schema audit")
    con.execute("create table audit.runs (run_id varchar, month date, rule_version varchar, status varchar, "
                "landing_dir varchar, finished_at timestamp)")
    con.execute("create table audit.rule_versions (rule_version varchar, content json)")
    con.execute("insert into audit.rule_versions values ('r1', '{}')")
    con.execute("insert into audit.runs values ('202401-x', date '2024-01-01', 'r1', 'success', ?, now())",
                [str(tmp_path / "gone.json")])
    # a month the previous core computed (a migrated warehouse): its landing_dir is a folder
    con.execute("insert into audit.runs values ('202402-y', date '2024-02-01', 'r1', 'success', ?, now())",
                [str(tmp_path / "landing" / "202402-y")])
    con.close()
    with pytest.raises(targets.TargetError, match=r"landing manifest of run 202401-x \(2024-01\) at .*gone.json"):
        targets.month_runs(warehouse)
    with pytest.raises(targets.TargetError, match="2024-02 was last computed by run 202402-y, which read no landing "
                                                  "manifest .*: run the month again on DuckDB, or pass --months"):
        targets.month_runs(warehouse, ["2024-02"])
    assert [m for m, *_ in targets.computed_months(warehouse)] == [date(2024, 1, 1), date(2024, 2, 1)]


# --- the row rules' dialect macros ---------------------------------------------------------------

def _macros():
    """The project's row-rule macros rendered with plain Jinja, as dbt renders them on each target:
    adapter.dispatch picks `<target>__name`, else `default__name`; var() gives the pipeline's vars."""
    names = ("row_rules.sql", "cross_db.sql", "postgres_functions.sql")
    source = "".join((DBT_PROJECT_DIR / "macros" / name).read_text() for name in names)
    dbt_vars = {"special_timestamps": list(SPECIAL_TIMESTAMPS),
                "pii": {"email": pii.EMAIL_PATTERN, "phone": pii.PHONE_PATTERN, "min_digits": pii.PHONE_MIN_DIGITS}}

    class Adapter:
        target = "duckdb"

        def dispatch(self, name, _package):
            return (getattr(module, f"{self.target}__{name}", None) or getattr(module, f"default__{name}", None)
                    or getattr(module, f"duckdb__{name}"))

    adapter = Adapter()
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    module = env.from_string(source, globals={
        "adapter": adapter, "return": lambda value: value,
        "var": lambda name, default=None: dbt_vars.get(name, default)}).module
    return module, adapter


TIMESTAMPS = ["2024-01-02T03:04:05", "2024-01-02 03:04:05", "2024-01-02", "2024-1-2", "2024-01-02T03:04",
              "2024-01-02T03:04:05.123456", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05+02:00",
              "2024-01-02T03:04:05+02", "2024-01-02T03:04:05-0530", " 2024-01-02T03:04:05 ",
              "2024-01-31T23:30:00-01:00", "2024-13-15T10:22:01", "15/03/2024", "05/03/2024", "2024-02-32T10:00:00",
              "2024-02-30", "2023-02-29", "2024-02-29", "20240102", "2024-01-02T24:00:00", "2024-01-02T25:00:00",
              "2024-01-02T03:04:60", "0001-01-01", "1899-12-31", "Jan 2 2024", "2024-01-02t03:04:05",
              "2024-01-02T03", "2024-01-02+02", "", " ", None, "infinity", "Epoch", " now ", "yesterday"]
DECIMALS = ["12.5", " 12.5 ", "+5", ".5", "5.", "1e3", "1.5E-2", "1,5", "nan", "inf", "12345678901234.5",
            "123456789012345.5", "99999999999999.99995", "1.23455", "-1.23455", "1e999999", "-0.00004", "", None]
FREE_TEXTS = ["call +31 6 12345678 please", "mail jan.jansen@example.com", "order 12345 of 2024-01-31",
              "ref 555-123-4567", "x555-123-4567", "555-123-4567x", "tel 020 7946 0958", "07700900123",
              "A07700900123", "run 202401-20261207T045512-ab12cd", "amount 12345.67", "(555) 123-4567",
              "+1 (555) 123-4567", "555.123.4567", "06 12 34 56 78", "12 345 678", "goodwill after complaint",
              "", None]


def _values(texts: list) -> str:
    return ", ".join("(" + ("null" if t is None else "'" + t.replace("'", "''") + "'") + ")" for t in texts)


def test_row_rule_readers_on_postgres_read_what_duckdb_reads(landing_database):
    macros, adapter = _macros()
    expressions = {}
    for target in ("duckdb", "postgres"):
        adapter.target = target
        expressions[target] = (f"{macros.read_timestamp('t.x')}, {macros.read_date('t.x')}, "
                               f"{macros.read_month('t.x')}, {macros.read_decimal('t.x')}, "
                               f"{macros.read_decimal('t.x', 8)}")
    functions = str(macros.create_row_rule_functions())      # (the on-run-start hook's, on postgres)
    duck = duckdb.connect()
    duck.execute("set timezone = 'UTC'")
    pg = targets.pg_connect()
    try:
        pg.execute("set timezone = 'America/New_York'")   # the readers do not depend on the session's zone
        pg.execute(functions)
        for texts in (TIMESTAMPS, DECIMALS, ["2024-01", "2024-13", "2024-1", " 2024-01"]):
            query = "select t.x, {} from (values {}) as t(x) order by 1 nulls first"
            expected = duck.execute(query.format(expressions["duckdb"], _values(texts))).fetchall()
            actual = pg.execute(query.format(expressions["postgres"], _values(texts))).fetchall()
            assert actual == expected
        offset = pg.execute(query.format(expressions["postgres"], _values(["2024-01-02T03:04:05+02:00"]))).fetchone()
        assert offset[1:3] == (datetime(2024, 1, 2, 1, 4, 5), None)
        # a year of five digits is read (the rule impossible_timestamp then rejects it, as on DuckDB)
        after_9999 = "select {} >= cast('10000-01-01' as timestamp) from (values ('12024-01-02T03:04:05')) as t(x)"
        for target, con in (("duckdb", duck), ("postgres", pg)):
            adapter.target = target
            assert con.execute(after_9999.format(macros.read_timestamp("t.x"))).fetchone() == (True,), target
        assert pg.execute("select tiering_try_decimal('1.23455', 18, 4), tiering_try_date('2024-02-30')").fetchone() \
            == (Decimal("1.2346"), None)
    finally:
        pg.close()
        duck.close()


def test_personal_data_in_free_text_on_postgres_is_what_python_finds(landing_database):
    macros, adapter = _macros()
    adapter.target = "postgres"
    expression = macros.contains_personal_data("t.x")
    pg = targets.pg_connect()
    try:
        found = dict(pg.execute(f"select t.x, coalesce({expression}, false) from (values {_values(FREE_TEXTS)}) "
                                "as t(x)").fetchall())
    finally:
        pg.close()
    assert found == {text: pii.contains_personal_data(text) for text in FREE_TEXTS}
    assert found["x555-123-4567"] is False and found["ref 555-123-4567"] is True   # \y, PostgreSQL's \b


@pytest.mark.parametrize(("left", "right", "same"), [
    (Decimal("67.56"), Decimal("67.56"), True),
    (Decimal("67.56"), Decimal("67.55"), False),    # decimals are exact
    (3, Decimal("3.000"), True),
    (0.1 + 0.2, 0.3, True),                         # doubles within 1e-9 (relative above 1)
    (1e6, 1e6 + 0.01, False),
    (12, 12.0, True),                               # e.g. a month difference: integer vs double
    (None, None, True),
    (None, 0, False),
    (True, 1, False),
    (date(2024, 1, 1), date(2024, 1, 1), True),
    ("A", "B", False),
])
def test_value_comparison(left, right, same):
    assert targets._same(left, right) is same
