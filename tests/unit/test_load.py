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
    inherited = Inherited(table="orders", since=SINCE, batch_ids=["jan"], added_ids=["jan"])
    assert _held(con, inherited) == {"feb-1", "feb-2", "carried-1"}
    sql = _held_rows(con, TABLES["orders"], inherited)
    # January's batch (cutoff = the base's) is not searched for the newer rows
    assert "_first_batch_id in ('jan-restated', 'mar')" in sql


def test_inherited_batches_are_found_by_the_rows_they_added_or_by_their_listed_keys(con):
    """A batch whose rows were all new to raw is found by _first_batch_id (its keys are not listed in
    raw.batch_rows); another batch by its keys; a mix of both by either."""
    con.execute("insert into raw.orders (_row_key, _first_batch_id) values ('jan-2', 'jan'), ('mar-2', 'feb')")
    con.execute("insert into raw.batch_rows values ('mar', 'orders', 'feb-1'), ('mar', 'orders', 'mar-2')")

    def members(inherited) -> set[str]:
        return {r[0] for r in con.execute(f"select _row_key from raw.orders where {inherited.members_filter()}"
                                          ).fetchall()}

    added = Inherited(table="orders", since=SINCE, batch_ids=["jan"], added_ids=["jan"])
    assert added.all_new and added.members_filter() == "_first_batch_id in ('jan')"
    assert members(added) == {"old-1", "carried-1", "jan-2"}
    listed = Inherited(table="orders", since=SINCE, batch_ids=["mar"])
    assert not listed.all_new and "_first_batch_id" not in listed.members_filter()
    assert members(listed) == {"feb-1", "mar-2"}
    mixed = Inherited(table="orders", since=SINCE, batch_ids=["jan", "mar"], added_ids=["jan"])
    assert not mixed.all_new
    assert members(mixed) == {"old-1", "carried-1", "jan-2", "feb-1", "mar-2"}


def test_a_batch_landed_in_full_probes_all_of_raw(con):
    assert _held(con, None) == {"feb-1", "feb-2", "carried-1"}


def test_without_later_batches_only_the_carried_rows_are_looked_up(con):
    con.execute("delete from audit.load_batches where run_id <> 'jan'")
    inherited = Inherited(table="orders", since=SINCE, batch_ids=["jan"], added_ids=["jan"])
    assert _held(con, inherited) == {"carried-1"}
    assert "_first_batch_id" not in _held_rows(con, TABLES["orders"], inherited)


@pytest.mark.parametrize("rows, inside", [(1000, "uncompressed"), (UNCOMPRESSED_SCRATCH_MAX_ROWS + 1, "auto")])
def test_a_small_batch_is_checked_uncompressed_and_the_setting_set_back(rows, inside):
    con = duckdb.connect()
    setting = "select current_setting('force_compression')"
    with _uncompressed_writes(con, rows):
        assert con.execute(setting).fetchone()[0] == inside
    assert con.execute(setting).fetchone()[0] == "auto"


def test_identical_lines_get_their_occurrence_number_in_line_order(tmp_path):
    """Each landed row's key is the hash of its values and its occurrence among identical lines
    (numbered by source line), so identical lines are distinct rows of raw and a rerun finds them
    again; the numbering happens after the checked rows are written (tiering.load._validate_table)."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.fixtures.sources import customer
    from tiering.load import SCRATCH, _validate_table
    from tiering.rules import load_rules
    from tiering.settings import DEFAULT_RULES

    spec = TABLES["customers"]
    rows = [customer("K1"), customer("K2"), customer("K1"), customer("K3"), customer("K1"), customer("K2")]
    columns = {c: [r.get(c) for r in rows] for c in spec.columns}   # (absent: NULL)
    landed = tmp_path / "customers.parquet"
    pq.write_table(pa.table({**columns, "_source_file": ["customers.csv"] * len(rows),
                             "_source_line": list(range(2, 2 + len(rows)))}), landed)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"attach '{tmp_path / 'scratch.duckdb'}' as {SCRATCH}")
    con.execute("create temp view valid_fx_rates as select 'EUR' as currency, '2024-01' as month where false")
    _validate_table(con, spec, str(landed), load_rules(DEFAULT_RULES), "2024-02-01 00:00:00+00", {})
    keys = con.execute(f"select _source_line, _row_key, rule from {SCRATCH}.checked_customers order by 1").fetchall()

    def content(r):
        joined = chr(31).join(chr(0) if r.get(c) is None else r[c] for c in spec.columns)
        return hashlib.md5(joined.encode()).hexdigest()

    assert keys == [(2, f"{content(rows[0])}-1", None), (3, f"{content(rows[1])}-1", None),
                    (4, f"{content(rows[0])}-2", None), (5, f"{content(rows[3])}-1", None),
                    (6, f"{content(rows[0])}-3", None), (7, f"{content(rows[1])}-2", None)]
