"""tiering.load: which of a batch's valid rows raw holds already, looked up only where they can be
(a delta's newer rows among the batches whose cutoff is later than its base's); the scratch
tables of a small batch written uncompressed."""
from __future__ import annotations

import duckdb
import pytest

from tiering.load import UNCOMPRESSED_SCRATCH_MAX_ROWS, Inherited, _held_rows, _uncompressed_writes
from tiering.source import TABLES
from tiering.warehouse import ensure_schema

SINCE = "2024-02-01"   # the delta's base cutoff: the base ran January


@pytest.fixture()
def con():
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    ensure_schema(con)
    # raw holds rows of three batches: January's (the base), March's (a later month run first)
    # and a restatement of January as of a later moment
    for run_id, month, restated, keys in (("jan", "2024-01-01", False, ["old-1", "carried-1"]),
                                          ("mar", "2024-03-01", False, ["feb-1"]),
                                          ("jan-restated", "2024-01-01", True, ["feb-2"])):
        con.execute("insert into audit.runs (run_id, month, restatement) values (?, ?, ?)", [run_id, month, restated])
        con.execute("insert into audit.load_batches (run_id, month, source_table, loaded_rows, new_raw_rows) "
                    "values (?, ?, 'orders', ?, ?)", [run_id, month, len(keys), len(keys)])
        for key in keys:
            con.execute(f"insert into raw.orders (_row_key, _first_batch_id) values ('{key}', '{run_id}')")
    # the batch's valid rows: two newer rows held by later batches, one new, one carried row
    # (updated before the base's cutoff) held since January, one carried row not held
    con.execute("""create temp table valid_orders as select * from (values
        ('feb-1', timestamptz '2024-02-10'), ('feb-2', timestamptz '2024-02-11'), ('feb-3', timestamptz '2024-02-12'),
        ('carried-1', timestamptz '2024-01-15'), ('carried-2', timestamptz '2024-01-16')) v(_row_key, _updated_ts)""")
    yield con
    con.close()


def _held(con, inherited) -> set[str]:
    return {r[0] for r in con.execute(_held_rows(con, TABLES["orders"], inherited)).fetchall()}


def test_a_delta_finds_its_newer_rows_in_later_batches_and_its_carried_rows_anywhere(con):
    inherited = Inherited(table="orders", since=SINCE, batch_ids=["jan"], all_new=True)
    assert _held(con, inherited) == {"feb-1", "feb-2", "carried-1"}
    sql = _held_rows(con, TABLES["orders"], inherited)
    # January's batch (cutoff = the base's) is not searched for the newer rows
    assert "_first_batch_id in ('jan-restated', 'mar')" in sql


def test_a_batch_landed_in_full_probes_all_of_raw(con):
    assert _held(con, None) == {"feb-1", "feb-2", "carried-1"}


def test_without_later_batches_only_the_carried_rows_are_looked_up(con):
    con.execute("delete from audit.load_batches where run_id <> 'jan'")
    inherited = Inherited(table="orders", since=SINCE, batch_ids=["jan"], all_new=True)
    assert _held(con, inherited) == {"carried-1"}
    assert "_first_batch_id" not in _held_rows(con, TABLES["orders"], inherited)


@pytest.mark.parametrize("rows, inside", [(1000, "uncompressed"), (UNCOMPRESSED_SCRATCH_MAX_ROWS + 1, "auto")])
def test_a_small_batch_is_checked_uncompressed_and_the_setting_set_back(rows, inside):
    con = duckdb.connect()
    setting = "select current_setting('force_compression')"
    with _uncompressed_writes(con, rows):
        assert con.execute(setting).fetchone()[0] == inside
    assert con.execute(setting).fetchone()[0] == "auto"
