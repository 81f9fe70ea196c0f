"""The pieces of incremental landing (tiering.increment, tiering.source): fingerprints, the
delta's filter, the collision check and the plan per table. The whole pipeline in both modes is
compared in tests/integration/test_incremental_landing.py."""
from __future__ import annotations

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.fixtures.sources import order, write_source
from tiering.errors import TieringError
from tiering.increment import Base, history_unchanged, landing_mode, plan_table, same_file_as_base
from tiering.source import (
    TABLES,
    Delta,
    carried_collisions,
    delta_line_ranges,
    depends_on,
    extract_as_of_to,
    fingerprint_of_landing,
    fingerprints,
    row_group_times,
)

ORDERS = TABLES["orders"]
JAN, FEB, MAR = "2024-02-01", "2024-03-01", "2024-04-01"   # month-end cutoffs of January .. March


def _orders(tmp_path, rows):
    return write_source(tmp_path / "src", orders=rows) / "orders.csv"


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("set TimeZone = 'UTC'")
    yield connection
    connection.close()


ROWS = [order("O1", "C1", "10.00", "2024-01-05T10:00:00"),           # line 2
        order("O2", "C1", "20.00", "2024-01-06T10:00:00"),           # line 3
        order("O1", "C1", "11.00", "2024-01-05T10:00:00", updated="2024-02-10T00:00:00"),  # line 4
        order("O3", "C1", "5.00", "2024-02-11T10:00:00", updated="not a time"),            # line 5
        order("O4", "C1", "7.00", "2024-03-02T10:00:00")]           # line 6


def test_fingerprints_count_the_rows_visible_before_each_cutoff(tmp_path, con):
    found = fingerprints(con, ORDERS, _orders(tmp_path, ROWS), [JAN, FEB, MAR])
    assert [found[c]["rows"] for c in (JAN, FEB, MAR)] == [2, 3, 4]
    assert found["unparseable"] == 1
    # the same rows give the same fingerprint; a changed old row changes it, a new row does not
    again = fingerprints(con, ORDERS, _orders(tmp_path / "again", ROWS), [JAN])
    assert again[JAN] == found[JAN]
    changed_rows = [order("O1", "C1", "10.01", "2024-01-05T10:00:00"), *ROWS[1:]]
    changed = fingerprints(con, ORDERS, _orders(tmp_path / "changed", changed_rows), [JAN])
    assert changed[JAN]["rows"] == 2 and changed[JAN]["hash"] != found[JAN]["hash"]
    appended = fingerprints(con, ORDERS, _orders(tmp_path / "appended", [*ROWS, order("O9", "C1", "1.00",
                                                                                      "2024-03-20T10:00:00")]), [JAN])
    assert appended[JAN] == found[JAN]
    # a row moved to another line is a change too (the audit trail keeps lines)
    moved = fingerprints(con, ORDERS, _orders(tmp_path / "moved", [ROWS[1], ROWS[0], *ROWS[2:]]), [JAN])
    assert moved[JAN]["hash"] != found[JAN]["hash"]


def test_a_delta_lands_the_changes_the_unparseable_and_the_carried_rows(tmp_path, con):
    out = tmp_path / "delta.parquet"
    # February's run on January's base
    rows = extract_as_of_to(con, ORDERS, _orders(tmp_path, ROWS), FEB, out, Delta(since=JAN, carried_lines=(3,)))
    landed = pq.read_table(out).to_pylist()
    # line 3 (carried), line 4 (updated in February), line 5 (unparseable); not line 2 (January,
    # inherited) nor line 6 (March)
    assert rows == 3 and [r["_source_line"] for r in landed] == [3, 4, 5]
    assert landed[0]["_source_file"] == "orders.csv" and landed[0]["amount"] == "20.00"
    full = extract_as_of_to(con, ORDERS, _orders(tmp_path / "full", ROWS), FEB, tmp_path / "full.parquet")
    assert full == 4


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_fingerprint_of_a_landing_is_the_scans(tmp_path, con, suffix):
    """With the source file unchanged, the fingerprint at the run's cutoff comes from the base's
    and the landed rows, not a scan of the source: it must be the scan's to the last bit."""
    path = _orders(tmp_path, ROWS)
    if suffix == ".parquet":   # the same rows in a Parquet source (lines are then row numbers)
        con.execute(f"copy (select * from read_csv('{path}', all_varchar = true)) to '{path.with_suffix(suffix)}'")
        path = path.with_suffix(suffix)
    scanned = fingerprints(con, ORDERS, path, [JAN, FEB, MAR])
    january = {"cutoff": JAN, **scanned[JAN]}
    full = tmp_path / "full.parquet"
    extract_as_of_to(con, ORDERS, path, FEB, full)
    assert fingerprint_of_landing(con, ORDERS, full, FEB, None) == {FEB: scanned[FEB], "unparseable": 1}
    for cutoff, carried in ((FEB, (2,) if suffix == ".csv" else (1,)), (MAR, ()), (JAN, ())):
        out = tmp_path / f"delta-{cutoff}.parquet"
        extract_as_of_to(con, ORDERS, path, cutoff, out, Delta(since=JAN, carried_lines=carried))
        assert fingerprint_of_landing(con, ORDERS, out, cutoff, january) == {cutoff: scanned[cutoff],
                                                                              "unparseable": 1}


def _parquet_in_row_groups(tmp_path, con, rows, size: int):
    csv = _orders(tmp_path, rows)
    path = csv.with_suffix(".parquet")
    con.execute(f"copy (select * from read_csv('{csv}', all_varchar = true)) to '{path}' (row_group_size {size})")
    csv.unlink()
    return path


def _us(con, moment: str) -> int:
    return con.execute(f"select epoch_us(timestamptz '{moment}')").fetchone()[0]


def test_row_group_times_give_each_groups_lines_times_and_unparseable_rows(tmp_path, con):
    # DuckDB writes row groups in multiples of 2048 rows: 3 groups of 2048 and one of 4 rows
    rows = [order(f"O{i}", "C1", "1.00", f"2024-01-{1 + i // 2048:02d}T10:00:00") for i in range(3 * 2048 + 4)]
    rows[2048 + 5]["updated_at"] = "not a time"                        # line 2054, in group 2
    rows[3 * 2048 + 1]["updated_at"] = "2024-03-02T10:00:00+02:00"      # line 6146, in group 4
    path = _parquet_in_row_groups(tmp_path, con, rows, 2048)
    groups = row_group_times(con, ORDERS, path)

    def day(d):
        return _us(con, f"2024-01-{d:02d}T10:00:00")

    assert groups == [[1, 2048, day(1), day(1), 0], [2049, 2048, day(2), day(2), 1],
                      [4097, 2048, day(3), day(3), 0], [6145, 4, day(4), _us(con, "2024-03-02T08:00:00"), 0]]
    # a delta from January 3 on reads groups 2 (unparseable row) to 4, merged into one range
    assert delta_line_ranges(groups, day(3)) == ((2049, 6148),)
    assert delta_line_ranges(groups, day(4)) == ((2049, 4096), (6145, 6148))
    assert delta_line_ranges([[1, 5, None, None, 5]], day(4)) == ((1, 5),)


def test_a_delta_read_from_some_row_groups_lands_what_a_whole_read_lands(tmp_path, con):
    """The row groups skipped hold no row of the delta; carried rows are landed wherever they are."""
    rows = [order(f"O{i}", "C1", "1.00", f"2024-01-{1 + i // 2048:02d}T10:00:00") for i in range(3 * 2048 + 4)]
    rows[2048 + 5]["updated_at"] = "not a time"
    rows[10]["updated_at"] = "2024-02-10T00:00:00"    # a late row in the first group: it is read
    rows[3 * 2048 + 2]["updated_at"] = "2024-04-10T00:00:00"   # after the cutoff
    path = _parquet_in_row_groups(tmp_path, con, rows, 2048)
    since = "2024-01-03T12:00:00"
    delta = Delta(since=since, carried_lines=(7, 2050, 5000))
    groups = row_group_times(con, ORDERS, path)
    ranges = delta_line_ranges(groups, _us(con, since))
    assert ranges == ((1, 4096), (6145, 6148))   # group 3 (January 3, before `since`) is skipped
    unparseable = delta_line_ranges(groups, None)
    assert unparseable == ((2049, 4096),)        # only group 2 holds an unparseable updated_at
    whole, some, fewer = tmp_path / "whole.parquet", tmp_path / "some.parquet", tmp_path / "fewer.parquet"
    assert extract_as_of_to(con, ORDERS, path, FEB, whole, delta) == \
        extract_as_of_to(con, ORDERS, path, FEB, some, Delta(since, delta.carried_lines, ranges)) == \
        extract_as_of_to(con, ORDERS, path, FEB, fewer, Delta(since, delta.carried_lines, ranges, unparseable)) == 8
    landed = pq.read_table(some).to_pylist()
    assert landed == sorted(pq.read_table(whole).to_pylist(), key=lambda r: r["_source_line"])
    assert pq.read_table(fewer).to_pylist() == landed
    assert [r["_source_line"] for r in landed] == [7, 11, 2050, 2054, 5000, 6145, 6146, 6148]


def test_row_group_times_parse_a_typed_updated_at_as_the_landing_does(tmp_path, con):
    """A Parquet source may type updated_at as a timestamp: it is read as text, as the landing reads it."""
    path = tmp_path / "orders.parquet"
    con.execute(f"""copy (select 'O' || i as order_id, 'C1' as customer_id, '2024-01-05' as ordered_at,
                         'completed' as status, 'EUR' as currency, '1.00' as amount, null as cost,
                         timestamp '2024-01-05 10:00:00' + i * interval 1 day as updated_at
                         from range(3) t(i)) to '{path}'""")
    assert row_group_times(con, ORDERS, path) == [[1, 3, _us(con, "2024-01-05T10:00:00"),
                                                   _us(con, "2024-01-07T10:00:00"), 0]]
    out = tmp_path / "delta.parquet"
    since = "2024-01-06T12:00:00"
    ranges = delta_line_ranges(row_group_times(con, ORDERS, path), _us(con, since))
    assert extract_as_of_to(con, ORDERS, path, FEB, out, Delta(since, (), ranges)) == 1


def test_the_same_file_needs_its_name_its_sha256_and_a_kept_fingerprint():
    base = _base(orders={"source_file": "orders.csv", "source_sha256": "ab", "fingerprint": {"cutoff": JAN}},
                 customers={"source_file": "customers.csv", "source_sha256": "cd"})
    assert same_file_as_base(base, "orders", "orders.csv", "ab")
    assert not same_file_as_base(base, "orders", "orders.csv", "ac")
    assert not same_file_as_base(base, "orders", "orders.parquet", "ab")
    assert not same_file_as_base(base, "customers", "customers.csv", "cd")   # no fingerprint kept
    assert not same_file_as_base(base, "invoices", "invoices.csv", "ab")
    assert not same_file_as_base(None, "orders", "orders.csv", "ab")


def test_a_carried_row_beside_another_version_at_the_same_moment_is_a_collision(tmp_path, con):
    rows = [order("O1", "C1", "10.00", "2024-01-05T10:00:00"),
            order("O1", "C1", "12.00", "2024-01-05T10:00:00", currency="XXX"),   # line 3, quarantined
            order("O2", "C1", "20.00", "2024-01-06T10:00:00")]
    path = _orders(tmp_path, rows)
    assert carried_collisions(con, ORDERS, path, Delta(since=JAN, carried_lines=(3,))) == 1
    assert carried_collisions(con, ORDERS, path, Delta(since=JAN, carried_lines=(4,))) == 0
    assert carried_collisions(con, ORDERS, path, Delta(since=JAN)) == 0


def _base(**tables) -> Base:
    return Base(run_id="202401-x", cutoff=JAN, tables=tables, quarantined_lines={"orders": (3, 7)})


def test_history_unchanged_needs_the_same_file_and_fingerprint():
    fp = {"rows": 2, "hash": "123"}
    base = _base(orders={"source_file": "orders.csv", "fingerprint": {"cutoff": JAN, **fp}})
    assert history_unchanged(base, "orders", "orders.csv", {JAN: fp}) == (True, "")
    unchanged, why = history_unchanged(base, "orders", "orders.csv", {JAN: {"rows": 3, "hash": "9"}})
    assert not unchanged and "changed since run 202401-x" in why and "2 rows then, 3 now" in why
    assert not history_unchanged(base, "orders", "orders.parquet", {JAN: fp})[0]
    assert history_unchanged(None, "orders", "orders.csv", {JAN: fp}) == (False, "no base run")
    # an optional table absent at the base and now is unchanged; one that appeared is not
    assert history_unchanged(base, "invoices", None, None)[0]
    assert not history_unchanged(base, "invoices", "invoices.csv", {JAN: fp})[0]


def test_plan_table_needs_every_table_the_rows_depend_on():
    base = _base()
    assert set(depends_on("orders")) == {"customers", "fx_rates"} and depends_on("payments") == ("invoices",)
    delta, _ = plan_table(base, "orders", True, "", {"customers", "fx_rates"})
    assert delta == Delta(since=JAN, carried_lines=(3, 7))
    delta, why = plan_table(base, "orders", True, "", {"fx_rates"})
    assert delta is None and why == "depends on customers, landed in full"
    assert plan_table(base, "orders", False, "its rows changed",
                      {"customers", "fx_rates"}) == (None, "its rows changed")


def test_landing_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("TIERING_LANDING", raising=False)
    assert landing_mode() == "incremental"
    monkeypatch.setenv("TIERING_LANDING", "FULL")
    assert landing_mode() == "full"
    monkeypatch.setenv("TIERING_LANDING", "sometimes")
    with pytest.raises(TieringError, match="TIERING_LANDING='sometimes': expected one of incremental, full"):
        landing_mode()



def test_the_staging_code_version_changes_with_a_model_or_macro(tmp_path, monkeypatch):
    import shutil

    from tiering import pipeline
    from tiering.settings import DBT_PROJECT_DIR

    project = tmp_path / "dbt_project"
    for folder in ("models/staging", "macros"):
        shutil.copytree(DBT_PROJECT_DIR / folder, project / folder)
    (project / "models" / "intermediate").mkdir()
    for name in pipeline.KEPT_WITH_STAGING:
        shutil.copy(DBT_PROJECT_DIR / "models" / "intermediate" / f"{name}.sql", project / "models" / "intermediate")
    monkeypatch.setattr(pipeline, "DBT_PROJECT_DIR", project)
    before = pipeline.staging_code_version()
    assert pipeline.staging_code_version() == before
    for changed in (project / "macros" / "staging.sql",
                    project / "models" / "intermediate" / "int_invoices__settlement.sql"):
        changed.write_text(changed.read_text() + "\n")
        assert pipeline.staging_code_version() != before
        before = pipeline.staging_code_version()


def test_the_landed_share_counts_the_delta_tables_only():
    from tiering.pipeline import MAX_STAGING_DELTA_SHARE, _landed_share

    manifest = {"tables": {"orders": {"landing": "delta", "rows": 10, "snapshot_rows": 100},
                           "payments": {"landing": "delta", "rows": 30, "snapshot_rows": 100},
                           "fx_rates": {"landing": "full", "rows": 50, "snapshot_rows": 50}}}
    assert _landed_share(manifest) == 0.2 <= MAX_STAGING_DELTA_SHARE
    assert _landed_share({"tables": {}}) == 0.0
