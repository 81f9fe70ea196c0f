"""The landing (tiering.landing) through the real steps start_run and extract_and_land, without
dbt: which partition each row lands in, what each partition and the catalog hold, what a run reads
and lands, and what a changed history does. Every expected value below is worked out by hand from
the rows written here (fingerprints: tests.fixtures.sources.fingerprint, from their definition).

Source, version 1 (CSV line numbers; line 1 is the header):
  customers  2 K1 updated 2023-01-01T00:00:00                 2023-01
             3 K2 updated 2024-02-01T00:30:00+01:00           2024-01 (23:30 UTC on January 31)
             4 K3 updated 2024-01-31T23:30:00-01:00           2024-02 (00:30 UTC on February 1)
             5 K4 updated 2024-01-31T23:59:59Z                2024-01
             6 K5 updated 'not a time'                        unparseable
             7 K6 updated 'infinity'                          unparseable
             8 K7 updated '' (empty)                          unparseable
             9 K8 updated 2024-01-15 (a date)                 2024-01
            10 K9 updated ' 2024-03-02T10:00:00 ' (spaces)    2024-03
            11 K10 updated 1899-12-31T23:00:00                1899-12
            12 K11 updated 'epoch'                            unparseable
  orders     2 O1 K1 2024-01-05T10:00:00                      2024-01
             3 O2 K2 2024-01-20T10:00:00+05:00                2024-01
             4 O1 K1 updated 2024-02-10T00:00:00              2024-02
             5 O3 K1 updated 2024-03-01T00:30:00+02:00        2024-02 (22:30 UTC on February 29)
             6 O4 K1 updated 'garbage'                        unparseable
  fx_rates   2 USD 2024-01, 3 USD 2024-02, 4 GBP '2024-13', 5 GBP '', 6 GBP 2023-12: by their month
             (4 and 5: unparseable)
  (no invoices, payments nor tier_overrides: optional files)
"""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.fixtures.sources import customer, fingerprint, fx_rate, order, to_parquet, write_source
from tiering import landing, pipeline
from tiering.runspec import RunSpec
from tiering.source import TABLES

CUSTOMERS = [
    customer("K1", created="2023-01-01T00:00:00"),
    customer("K2", updated="2024-02-01T00:30:00+01:00"),
    customer("K3", updated="2024-01-31T23:30:00-01:00"),
    customer("K4", updated="2024-01-31T23:59:59Z"),
    customer("K5", updated="not a time"),
    customer("K6", updated="infinity"),
    customer("K7", updated=""),
    customer("K8", updated="2024-01-15"),
    customer("K9", updated=" 2024-03-02T10:00:00 "),
    customer("K10", updated="1899-12-31T23:00:00"),
    customer("K11", updated="epoch"),
]
# (customer() writes updated = created when updated is empty: K7's updated_at is set empty below)
CUSTOMERS[6]["updated_at"] = ""
ORDERS = [
    order("O1", "K1", "10.00", "2024-01-05T10:00:00"),
    order("O2", "K2", "20.00", "2024-01-20T10:00:00+05:00"),
    order("O1", "K1", "11.00", "2024-01-05T10:00:00", updated="2024-02-10T00:00:00"),
    order("O3", "K1", "30.00", "2024-02-20T10:00:00", updated="2024-03-01T00:30:00+02:00"),
    order("O4", "K1", "40.00", "2024-01-07T10:00:00", updated="garbage"),
]
FX_RATES = [fx_rate("USD", "2024-01", "0.9"), fx_rate("USD", "2024-02", "0.91"), fx_rate("GBP", "2024-13", "1.1"),
            fx_rate("GBP", "", "1.1"), fx_rate("GBP", "2023-12", "1.2")]

# partition -> the source lines (CSV) it holds
CUSTOMER_PARTITIONS = {"1899-12": [11], "2023-01": [2], "2024-01": [3, 5, 9], "2024-02": [4], "2024-03": [10],
                       "unparseable": [6, 7, 8, 12]}
ORDER_PARTITIONS = {"2024-01": [2, 3], "2024-02": [4, 5], "unparseable": [6]}
FX_PARTITIONS = {"2023-12": [6], "2024-01": [2], "2024-02": [3], "unparseable": [4, 5]}
ROWS = {"customers": CUSTOMERS, "orders": ORDERS, "fx_rates": FX_RATES}
PARTITIONS = {"customers": CUSTOMER_PARTITIONS, "orders": ORDER_PARTITIONS, "fx_rates": FX_PARTITIONS}


def _in_january(partitions: dict) -> dict:
    return {p: lines for p, lines in partitions.items() if p <= "2024-01" or p == "unparseable"}


def _expected_fingerprints(table: str, months: str = "2024-01", rows: list[dict] | None = None) -> dict:
    """{partition: fingerprint} of the partitions a run of `months` reads, by hand from the rows."""
    rows = rows if rows is not None else ROWS[table]
    return {p: fingerprint(table, [rows[line - 2] for line in lines])
            for p, lines in PARTITIONS[table].items() if p <= months or p == "unparseable"}


def _source(directory: Path, **changed) -> Path:
    return write_source(directory, **{**ROWS, **changed})


def _land(source: Path, warehouse: Path, month: str, restate: bool = False, land_through: str | None = None) -> dict:
    """start_run and extract_and_land of one month (of a backfill through `land_through`); the run's
    landing manifest."""
    run = pipeline.start_run({"month": month, "source_dir": str(source), "warehouse": str(warehouse),
                              "restate": restate, "land_through": land_through})
    pipeline.extract_and_land(run)
    return json.loads(RunSpec.from_conf(run).landing_manifest.read_text()) | {"_run": run}


def _finished(warehouse: Path, manifest: dict) -> None:
    """Mark a run successful in audit.runs, as finish_run does (the rest of the run is dbt's)."""
    from tiering.warehouse import connect

    con = connect(warehouse)
    try:
        con.execute("update audit.runs set status = 'success', finished_at = now() where run_id = ?",
                    [manifest["run_id"]])
    finally:
        con.close()


def _catalog(warehouse: Path) -> dict:
    return json.loads((warehouse.parent / "landing" / "_catalog.json").read_text())


def _tree(warehouse: Path) -> dict[str, bytes]:
    """Every file of the landing (but the run manifests) with its bytes."""
    root = warehouse.parent / "landing"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_runs" not in p.parts}


def _lines(warehouse: Path, file: str | Path) -> list[int]:
    """The source lines a landed file holds (named as the catalog and the manifests name it, relative
    to the landing root), in order (the order of its rows is not part of it)."""
    return sorted(pq.read_table(warehouse.parent / "landing" / file).column("_source_line").to_pylist())


@pytest.fixture
def warehouse(tmp_path) -> Path:
    return tmp_path / "wh" / "tiering.duckdb"


def test_rows_land_in_the_utc_month_of_their_updated_at_as_text(tmp_path, warehouse):
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    root = warehouse.parent / "landing"
    for table, partitions in PARTITIONS.items():
        key = "rate_month" if table == "fx_rates" else "updated_month"
        expected = _in_january(partitions)
        # the months up to January and `unparseable` are landed and read; February and March wait
        assert january["tables"][table]["landed"] == sorted(expected), table
        assert sorted(january["tables"][table]["partitions"]) == sorted(expected), table
        for partition, lines in expected.items():
            path = root / table / f"{key}={partition}" / "v1.parquet"
            assert _lines(warehouse, path) == lines, (table, partition)
            rows = sorted(pq.read_table(path).to_pylist(), key=lambda r: r["_source_line"])
            assert {r["landing_partition"] for r in rows} == {partition}
            assert {r["_source_file"] for r in rows} == {f"{table}.csv"}
            # every landed value is the source's text, unchanged (offsets, spaces, sentinels); an
            # optional column the file lacks (orders.original_order_id) is NULL
            spec = TABLES[table]
            source_rows = [ROWS[table][line - 2] for line in lines]
            assert [{c: r[c] for c in spec.landed_columns} for r in rows] == \
                [{c: None if c in spec.optional_columns else s.get(c, "") for c in spec.landed_columns}
                 for s in source_rows]
        assert sorted(p.name for p in (root / table).iterdir()) == sorted(f"{key}={p}" for p in expected)
    assert january["tables"]["customers"]["rows"] == 1 + 1 + 3 + 4
    assert january["tables"]["orders"]["rows"] == 3 and january["tables"]["fx_rates"]["rows"] == 4
    for table in ("invoices", "payments", "tier_overrides"):   # optional files, absent
        assert january["tables"][table] | {"source_sha256": None} == {
            "source_file": None, "source_sha256": None, "source_read": True, "landed": [], "partitions": {},
            "rows": 0}
    assert not (root / "_tmp").exists() or not any((root / "_tmp").iterdir())


def test_personal_columns_land_apart_never_in_the_main_log(tmp_path, warehouse):
    _land(_source(tmp_path / "src"), warehouse, "2024-01")
    root = warehouse.parent / "landing"
    personal = {v for c in CUSTOMERS for v in (c["name"], c["email"], c["phone"])}
    for path in sorted((root / "customers").rglob("*.parquet")):
        table = pq.read_table(path)
        assert table.column_names == ["customer_id", "region", "industry", "customer_kind", "parent_customer_id",
                                      "created_at", "updated_at", "_source_file", "_source_line",
                                      "landing_partition", "_hash"]
        assert not personal & {v for column in table.to_pydict().values() for v in column}, path
    landed = {}
    for path in sorted((root / "customers_personal").rglob("*.parquet")):
        table = pq.read_table(path)
        assert table.column_names == ["customer_id", "updated_at", "name", "email", "phone", "_source_line",
                                      "landing_partition"]
        landed |= {r["customer_id"]: r for r in table.to_pylist()}
    # the same partitions, each person's row beside its version's line
    assert sorted(p.name for p in (root / "customers_personal").iterdir()) == \
        sorted(p.name for p in (root / "customers").iterdir())
    assert landed["K2"] == {"customer_id": "K2", "updated_at": "2024-02-01T00:30:00+01:00", "name": "Name K2",
                            "email": "K2@example.com", "phone": "+31 6 0000000", "_source_line": 3,
                            "landing_partition": "2024-01"}
    assert sorted(landed) == sorted(CUSTOMERS[line - 2]["customer_id"]
                                    for lines in _in_january(CUSTOMER_PARTITIONS).values() for line in lines)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_catalog_holds_each_partitions_fingerprint(tmp_path, warehouse, fmt):
    """Row count and content hash per partition, as computed by hand; a Parquet source of the
    same rows has the same fingerprints (line numbers are not part of them)."""
    source = _source(tmp_path / "src")
    if fmt == "parquet":
        to_parquet(source)
    january = _land(source, warehouse, "2024-01")
    catalog = _catalog(warehouse)
    for table in ROWS:
        entry = catalog["tables"][table]
        assert entry["source_file"] == f"{table}.{fmt}" and entry["compared_through"] == "2024-01"
        expected = _expected_fingerprints(table)
        assert {p: {"rows": v[0]["rows"], "hash": v[0]["hash"]} for p, v in entry["partitions"].items()} == \
            expected, table
        for partition, versions in entry["partitions"].items():
            assert [v["version"] for v in versions] == [1]
            assert versions[0]["landed_by"] == january["run_id"]
            key = "rate_month" if table == "fx_rates" else "updated_month"
            assert versions[0]["file"] == f"{table}/{key}={partition}/v1.parquet"   # relative to the landing root
            shift = 0 if fmt == "csv" else -1   # a Parquet row's line is its position + 1
            assert _lines(warehouse, versions[0]["file"]) == [line + shift for line in PARTITIONS[table][partition]]
        # the run's manifest lists what it read: the same versions and fingerprints
        assert {p: {"rows": v["rows"], "hash": v["hash"], "version": v["version"], "file": v["file"]}
                for p, v in january["tables"][table]["partitions"].items()} == \
            {p: {**fp, "version": 1, "file": entry["partitions"][p][0]["file"]} for p, fp in expected.items()}


def test_each_partition_is_written_once_and_an_identical_source_is_not_read_again(tmp_path, warehouse,
                                                                                   monkeypatch):
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    before = _tree(warehouse)
    february = _land(source, warehouse, "2024-02")
    _finished(warehouse, february)
    # February reads the file again (compared through January only) and lands February's partitions only
    assert {t: (v["source_read"], v["landed"]) for t, v in february["tables"].items() if v["source_file"]} == {
        "customers": (True, ["2024-02"]), "orders": (True, ["2024-02"]), "fx_rates": (True, ["2024-02"])}
    after = _tree(warehouse)
    assert {f: b for f, b in after.items() if f in before and f != "_catalog.json"} == \
        {f: b for f, b in before.items() if f != "_catalog.json"}          # January's files untouched
    assert sorted(set(after) - set(before)) == ["customers/updated_month=2024-02/v1.parquet",
                                                "customers_personal/updated_month=2024-02/v1.parquet",
                                                "fx_rates/rate_month=2024-02/v1.parquet",
                                                "orders/updated_month=2024-02/v1.parquet"]
    for table in ROWS:
        read = february["tables"][table]["partitions"]
        assert sorted(read) == sorted(p for p in PARTITIONS[table] if p <= "2024-02" or p == "unparseable")
        assert {p: v["landed_by"] for p, v in read.items()} == {
            p: february["run_id"] if p == "2024-02" else january["run_id"] for p in read}
        assert {p: {"rows": v["rows"], "hash": v["hash"]} for p, v in read.items()} == \
            _expected_fingerprints(table, "2024-02")
    # January and February again, the same bytes: compared through February already, so not read
    # at all (reading it would fail here), and nothing is landed
    def unread(*args, **kwargs):
        raise AssertionError("a source file compared before, byte for byte, was read again")

    monkeypatch.setattr(landing, "source_rows", unread)
    for month, first in (("2024-01", january), ("2024-02", february)):
        again = _land(source, warehouse, month)
        for table, entry in again["tables"].items():
            assert (entry["landed"], entry["partitions"], entry["rows"]) == \
                ([], first["tables"][table]["partitions"], first["tables"][table]["rows"]), (month, table)
            if entry["source_file"]:
                assert entry["source_read"] is False
    assert _tree(warehouse) == after


def test_a_backfills_first_run_lands_every_month_and_the_later_runs_read_nothing(tmp_path, warehouse,
                                                                                 monkeypatch):
    """A backfill of 2024-01..2024-02 (tiering backfill: RunSpec.land_through): January's run lands
    February's partitions too, yet reads and counts as landed only what a run of January alone
    does; February's run finds the very file compared through February and reads nothing, and
    counts February's partitions, landed ahead, as its own (what gate (a) validates)."""
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01", land_through="2024-02")
    _finished(warehouse, january)
    for table in ROWS:
        assert {p: {"rows": v["rows"], "hash": v["hash"]} for p, v in january["tables"][table]["partitions"].items()} \
            == _expected_fingerprints(table, "2024-01")
    assert {t: january["tables"][t]["landed"] for t in ROWS} == {
        "customers": ["1899-12", "2023-01", "2024-01", "unparseable"], "orders": ["2024-01", "unparseable"],
        "fx_rates": ["2023-12", "2024-01", "unparseable"]}
    catalog = _catalog(warehouse)
    for table in ROWS:
        versions = catalog["tables"][table]["partitions"]
        assert versions["2024-02"] == [{**versions["2024-02"][0], "landed_by": january["run_id"], "ahead": True}]
        assert "2024-03" not in versions           # after the backfill's last month: not landed
        assert not any(v[0].get("ahead") for p, v in versions.items() if p != "2024-02")
        assert _lines(warehouse, versions["2024-02"][0]["file"]) == PARTITIONS[table]["2024-02"]
    before = _tree(warehouse)

    def unread(*args, **kwargs):
        raise AssertionError("a source file compared through the month was read again")

    monkeypatch.setattr(landing, "source_rows", unread)
    february = _land(source, warehouse, "2024-02", land_through="2024-02")
    assert {t: (v["source_read"], v["landed"]) for t, v in february["tables"].items() if v["source_file"]} == {
        t: (False, ["2024-02"]) for t in ROWS}
    for table in ROWS:
        read = february["tables"][table]["partitions"]
        assert {p: {"rows": v["rows"], "hash": v["hash"]} for p, v in read.items()} == \
            _expected_fingerprints(table, "2024-02")
        assert {v["landed_by"] for v in read.values()} == {january["run_id"]}
    assert _tree(warehouse) == before


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_compared_through_an_earlier_month_places_every_later_row(tmp_path, warehouse, fmt):
    """The later months of a file compared before are read through a text condition on updated_at
    (landing._after, for Parquet row-group statistics): rows whose text sorts before it and yet
    read as a later month (a leading space or zero, an offset across the month's end) land too."""
    orders = [*ORDERS,
              order("O5", "K1", "5.00", "2024-02-01T10:00:00", updated=" 2024-02-03T10:00:00"),
              order("O6", "K1", "6.00", "2024-02-01T10:00:00", updated="02024-02-04T10:00:00"),
              order("O7", "K1", "7.00", "2024-01-31T10:00:00", updated="2024-01-31T23:30:00-01:00"),
              order("O8", "K1", "8.00", "2024-01-20T10:00:00", updated="2024-01-30T10:00:00")]
    source = _source(tmp_path / "src", orders=orders)
    if fmt == "parquet":
        to_parquet(source)
    _finished(warehouse, _land(source, warehouse, "2024-01"))
    february = _land(source, warehouse, "2024-02")["tables"]["orders"]
    assert february["source_read"] and february["landed"] == ["2024-02"]
    # O1's second version, O3 (29 February 22:30 UTC), O5, O6 and O7 (1 February 00:30 UTC); a
    # Parquet file's lines are its rows' positions + 1 (no header line)
    first = 2 if fmt == "csv" else 1
    assert _lines(warehouse, february["partitions"]["2024-02"]["file"]) == [first + i for i in (2, 3, 5, 6, 7)]
    assert _lines(warehouse, february["partitions"]["2024-01"]["file"]) == [first + i for i in (0, 1, 8)]


def test_a_re_export_in_another_row_order_is_no_change(tmp_path, warehouse):
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    before = _tree(warehouse)
    _source(source, **{t: list(reversed(rows)) for t, rows in ROWS.items()})
    again = _land(source, warehouse, "2024-01")
    assert {t: (v["source_read"], v["landed"]) for t, v in again["tables"].items() if v["source_file"]} == {
        t: (True, []) for t in ROWS}
    assert {t: v["partitions"] for t, v in again["tables"].items()} == \
        {t: v["partitions"] for t, v in january["tables"].items()}
    assert {f: b for f, b in _tree(warehouse).items() if f != "_catalog.json"} == \
        {f: b for f, b in before.items() if f != "_catalog.json"}


def test_an_optional_column_added_empty_or_dropped_is_no_change(tmp_path, warehouse):
    """orders.original_order_id absent from the file (NULL) or present and empty ('') is the same
    history: a source that gains or drops the optional column restates nothing."""
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    write_source(source, extra_columns={"orders": ("original_order_id",)}, **ROWS)
    again = _land(source, warehouse, "2024-01")
    assert again["tables"]["orders"]["source_read"] and again["tables"]["orders"]["landed"] == []
    assert again["tables"]["orders"]["partitions"] == january["tables"]["orders"]["partitions"]
    assert _expected_fingerprints("orders") == {
        p: fingerprint("orders", [ORDERS[line - 2] for line in lines], ("original_order_id",))
        for p, lines in _in_january(ORDER_PARTITIONS).items()}


# --- a changed history --------------------------------------------------------------------------------

# version 2 of the source: in January's partitions, K2 changed (region), O2 gone, O1's January row
# changed (12.00) and a late order O9 (updated 2024-01-25); February's rows are unchanged
CUSTOMERS_V2 = [c if c["customer_id"] != "K2" else {**c, "region": "South"} for c in CUSTOMERS]
ORDERS_V2 = [order("O1", "K1", "12.00", "2024-01-05T10:00:00"), *ORDERS[2:],
             order("O9", "K1", "5.00", "2024-01-25T10:00:00")]


def test_a_changed_history_fails_a_plain_run_and_writes_nothing(tmp_path, warehouse):
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    before = _tree(warehouse)
    _source(source, customers=CUSTOMERS_V2, orders=ORDERS_V2)
    run = pipeline.start_run({"month": "2024-02", "source_dir": str(source), "warehouse": str(warehouse)})
    with pytest.raises(landing.SourceChangedError) as failed:
        pipeline.extract_and_land(run)
    # one line, one summary per table that changed (customers: K2's row changed; orders: O1's row
    # changed, O2 gone, O9 late: rows matched by id and updated_at, compared by content)
    assert str(failed.value) == (
        "the source's history up to 2024-02 differs from the change log ("
        "customers: 1 month(s) changed (2024-01): 0 row(s) gone, 0 row(s) new, 1 row(s) changed; "
        "orders: 1 month(s) changed (2024-01): 1 row(s) gone, 1 row(s) new, 1 row(s) changed); "
        "rerun with --restate to land it as a new version")
    # nothing written: no partition (not even February's), the same catalog, no manifest, no scratch
    assert _tree(warehouse) == before
    assert not RunSpec.from_conf(run).landing_manifest.exists()
    assert not any((warehouse.parent / "landing" / "_tmp").glob("*"))


def test_a_change_counts_rows_by_the_version_they_are_of(tmp_path, warehouse):
    """A row is matched by its key and updated_at (fx_rates: currency and month), and changed when
    its content differs: K4 with another updated_at is a version gone and one new; USD's January
    rate corrected is one row changed, GBP's January rate one new; a row landed twice and now once
    is one gone."""
    source = _source(tmp_path / "src", customers=[*CUSTOMERS, CUSTOMERS[7]])     # K8's row twice
    _finished(warehouse, _land(source, warehouse, "2024-01"))
    customers = [c if c["customer_id"] != "K4" else {**c, "updated_at": "2024-01-20T00:00:00"} for c in CUSTOMERS]
    _source(source, customers=customers,
            fx_rates=[fx_rate("USD", "2024-01", "0.95"), *FX_RATES[1:], fx_rate("GBP", "2024-01", "1.15")])
    with pytest.raises(landing.SourceChangedError) as failed:
        _land(source, warehouse, "2024-01")
    assert str(failed.value) == (
        "the source's history up to 2024-01 differs from the change log ("
        "fx_rates: 1 month(s) changed (2024-01): 0 row(s) gone, 1 row(s) new, 1 row(s) changed; "
        "customers: 1 month(s) changed (2024-01): 2 row(s) gone, 1 row(s) new, 0 row(s) changed); "
        "rerun with --restate to land it as a new version")


def test_a_changed_table_followed_by_a_csv_table_is_reported_as_a_change(tmp_path, warehouse):
    """The change's description must leave the connection free for the next table's CSV (invoices
    is compared right after orders): the run fails with the one-line summary, nothing else."""
    invoices = [{"invoice_id": "I1", "order_id": "O1", "customer_id": "K1", "issued_on": "2024-01-06",
                 "due_on": "2024-02-05", "amount_due": "10.00", "currency": "EUR", "updated_at": "2024-01-06T10:00:00"}]
    source = _source(tmp_path / "src", invoices=invoices)
    _finished(warehouse, _land(source, warehouse, "2024-01"))
    _source(source, orders=ORDERS_V2, invoices=invoices)
    run = pipeline.start_run({"month": "2024-02", "source_dir": str(source), "warehouse": str(warehouse)})
    with pytest.raises(landing.SourceChangedError, match=r"\(orders: 1 month\(s\) changed \(2024-01\)"):
        pipeline.extract_and_land(run)


def test_restate_lands_the_changed_partitions_as_new_versions_and_keeps_the_old(tmp_path, warehouse):
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    before = _tree(warehouse)
    _source(source, customers=CUSTOMERS_V2, orders=ORDERS_V2)
    restated = _land(source, warehouse, "2024-02", restate=True)
    assert restated["restatement"] is True
    assert {t: restated["tables"][t]["landed"] for t in ROWS} == {
        "customers": ["2024-01", "2024-02"], "orders": ["2024-01", "2024-02"], "fx_rates": ["2024-02"]}
    after = _tree(warehouse)
    assert {f: after[f] for f in before if f != "_catalog.json"} == \
        {f: b for f, b in before.items() if f != "_catalog.json"}          # version 1 kept as it was
    catalog = _catalog(warehouse)
    orders = catalog["tables"]["orders"]["partitions"]["2024-01"]
    assert [(v["version"], v["landed_by"]) for v in orders] == [(1, january["run_id"]), (2, restated["run_id"])]
    new_january = [ORDERS_V2[0], ORDERS_V2[-1]]        # O1 at 12.00 (line 2), O9 (line 6)
    assert {k: orders[1][k] for k in ("rows", "hash")} == fingerprint("orders", new_january)
    assert {k: orders[0][k] for k in ("rows", "hash")} == fingerprint("orders", ORDERS[:2])
    assert _lines(warehouse, orders[1]["file"]) == [2, 6] and _lines(warehouse, orders[0]["file"]) == [2, 3]
    root = warehouse.parent / "landing"
    assert {stat.S_IMODE(os.stat(root / v["file"]).st_mode) for v in orders} == {0o444}   # read-only
    customers = catalog["tables"]["customers"]["partitions"]["2024-01"]
    assert [v["version"] for v in customers] == [1, 2]
    assert {k: customers[1][k] for k in ("rows", "hash")} == \
        fingerprint("customers", [CUSTOMERS_V2[i] for i in (1, 3, 7)])
    # the restated run reads version 2 of January, version 1 of the others
    read = {t: {p: v["version"] for p, v in restated["tables"][t]["partitions"].items()} for t in ROWS}
    assert read["orders"] == {"2024-01": 2, "2024-02": 1, "unparseable": 1}
    assert read["customers"] == {"1899-12": 1, "2023-01": 1, "2024-01": 2, "2024-02": 1, "unparseable": 1}
    assert set(read["fx_rates"].values()) == {1}


def test_a_plain_rerun_of_a_month_computed_from_a_restated_version_fails(tmp_path, warehouse):
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    _source(source, customers=CUSTOMERS_V2, orders=ORDERS_V2)
    _finished(warehouse, _land(source, warehouse, "2024-02", restate=True))
    before = _tree(warehouse)
    # January was computed from version 1 of its partitions; the change log's current ones are 2
    run = pipeline.start_run({"month": "2024-01", "source_dir": str(source), "warehouse": str(warehouse)})
    with pytest.raises(landing.SourceChangedError) as failed:
        pipeline.extract_and_land(run)
    assert str(failed.value) == (
        f"2024-01 was computed by run {january['run_id']} from other versions of the change log "
        f"(customers 2024-01 v1 -> v2; orders 2024-01 v1 -> v2); rerun with --restate to recompute it from "
        f"the current ones")
    assert _tree(warehouse) == before and not RunSpec.from_conf(run).landing_manifest.exists()
    # ... which a restatement of January does
    again = _land(source, warehouse, "2024-01", restate=True)
    assert again["tables"]["orders"]["landed"] == []
    assert again["tables"]["orders"]["partitions"]["2024-01"]["version"] == 2


def test_a_rerun_failing_the_reproducibility_check_writes_nothing(tmp_path, warehouse):
    """The versions a rerun would read are checked before anything is written: here the rerun of
    February would also land a newer partition (invoices of February: the optional file appeared)
    and a new version of `unparseable`; neither is written, nor is the catalog."""
    source = _source(tmp_path / "src")
    february = _land(source, warehouse, "2024-02")
    _finished(warehouse, february)
    # a --restate of February lands orders' January as version 2 (and, say, fails a later gate:
    # February's last successful run is still the one that read version 1)
    _source(source, orders=ORDERS_V2)
    restated = _land(source, warehouse, "2024-02", restate=True)
    assert restated["tables"]["orders"]["landed"] == ["2024-01"]
    invoices = [{"invoice_id": "I1", "order_id": "O3", "customer_id": "K1", "issued_on": "2024-02-21",
                 "due_on": "2024-03-21", "amount_due": "30.00", "currency": "EUR", "updated_at": "2024-02-21T10:00:00"}]
    _source(source, orders=[*ORDERS_V2, order("O5", "K1", "1.00", updated="not a date")], invoices=invoices)
    before = _tree(warehouse)
    run = pipeline.start_run({"month": "2024-02", "source_dir": str(source), "warehouse": str(warehouse)})
    with pytest.raises(landing.SourceChangedError) as failed:
        pipeline.extract_and_land(run)
    assert str(failed.value) == (
        f"2024-02 was computed by run {february['run_id']} from other versions of the change log "
        f"(orders 2024-01 v1 -> v2; invoices 2024-02 v0 -> v1); rerun with --restate to recompute it from "
        f"the current ones")
    # no new version, no new partition, the same catalog; no manifest, no scratch files
    assert _tree(warehouse) == before
    root = warehouse.parent / "landing"
    assert not (root / "invoices").exists()
    assert sorted(p.name for p in (root / "orders" / "updated_month=unparseable").iterdir()) == ["v1.parquet"]
    assert not RunSpec.from_conf(run).landing_manifest.exists()
    assert not any((root / "_tmp").glob("*"))


def test_a_catalog_and_manifests_naming_absolute_files_still_read(tmp_path, warehouse):
    """The landing before named each version's file by absolute path: such a catalog and manifest
    still read (an absolute name as it is), and the versions landed since are named relative."""
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    root = warehouse.parent / "landing"
    manifest = root / "_runs" / f"{january['run_id']}.json"
    for path, versions_of in ((root / landing.CATALOG, lambda p: p), (manifest, lambda v: [v])):
        written = json.loads(path.read_text())
        for table in written["tables"].values():
            for versions in table["partitions"].values():
                for version in versions_of(versions):
                    version["file"] = str(root / version["file"])
        path.write_text(json.dumps(written))
    read = landing.load_manifest(manifest)["tables"]["orders"]["partitions"]["2024-01"]["file"]
    assert read == str(root / "orders" / "updated_month=2024-01" / "v1.parquet")
    # a changed history is described from the absolute version, and --restate lands a relative one
    _source(source, orders=ORDERS_V2)
    with pytest.raises(landing.SourceChangedError, match=r"orders: 1 month\(s\) changed \(2024-01\): 1 row\(s\) gone"):
        _land(source, warehouse, "2024-02")
    restated = _land(source, warehouse, "2024-02", restate=True)
    versions = _catalog(warehouse)["tables"]["orders"]["partitions"]["2024-01"]
    assert [v["file"] for v in versions] == [read, "orders/updated_month=2024-01/v2.parquet"]
    assert restated["tables"]["orders"]["partitions"]["2024-02"]["file"] == "orders/updated_month=2024-02/v1.parquet"
    assert restated["tables"]["customers"]["partitions"]["2023-01"]["file"] == \
        str(root / "customers" / "updated_month=2023-01" / "v1.parquet")
    # audit.runs.landing_dir is looked up in the warehouse's landing root (a previous core's folder as it is)
    assert landing.manifest_path(warehouse, "/elsewhere/landing/_runs/r1.json") == root / "_runs" / "r1.json"
    assert landing.manifest_path(warehouse, "/elsewhere/landing/r1") == Path("/elsewhere/landing/r1")


def test_a_changed_unparseable_partition_is_landed_again_silently(tmp_path, warehouse):
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    orders = [*ORDERS, order("O5", "K1", "1.00", "2024-01-08T10:00:00", updated="2024-13-01")]
    _source(source, orders=orders)
    february = _land(source, warehouse, "2024-02")
    assert february["tables"]["orders"]["landed"] == ["2024-02", "unparseable"]
    unparseable = february["tables"]["orders"]["partitions"]["unparseable"]
    assert unparseable["version"] == 2 and _lines(warehouse, unparseable["file"]) == [6, 7]
    assert {k: unparseable[k] for k in ("rows", "hash")} == fingerprint("orders", [orders[4], orders[5]])


def test_a_late_row_in_a_month_landed_without_rows_is_a_change(tmp_path, warehouse):
    """A late row whose month had no row when it was landed has no partition to differ from:
    it is still a change of a landed month (the months up to the last one landed)."""
    source = _source(tmp_path / "src")
    _finished(warehouse, _land(source, warehouse, "2024-01"))
    before = _tree(warehouse)
    # a customer updated in June 2023 (no customer was): arrives after January was landed
    _source(source, customers=[*CUSTOMERS, customer("K12", updated="2023-06-10T00:00:00")])
    with pytest.raises(landing.SourceChangedError, match=r"customers: 1 month\(s\) changed \(2023-06\): "
                                                         r"0 row\(s\) gone, 1 row\(s\) new, 0 row\(s\) changed\)"):
        _land(source, warehouse, "2024-02")
    assert _tree(warehouse) == before
    restated = _land(source, warehouse, "2024-02", restate=True)
    assert restated["tables"]["customers"]["landed"] == ["2023-06", "2024-02"]


def test_a_year_past_9999_cannot_be_placed_in_a_month(tmp_path, warehouse):
    """'12024-01-05' reads as a timestamp in year 12024; as a partition name, '12024-01' would sort
    before '2024-01' and be read by every month: it is unparseable."""
    source = _source(tmp_path / "src", orders=[*ORDERS, order("O6", "K1", "1.00", updated="12024-01-05T10:00:00")])
    january = _land(source, warehouse, "2024-01")
    assert _lines(warehouse, january["tables"]["orders"]["partitions"]["unparseable"]["file"]) == [6, 7]
    assert sorted(january["tables"]["orders"]["partitions"]) == ["2024-01", "unparseable"]


# --- a landing killed half-way --------------------------------------------------------------------------

def test_a_killed_landing_leaves_the_next_run_clean(tmp_path, warehouse, monkeypatch):
    """A landing killed after it moved its partitions into the log but before it wrote the
    catalog (and with its scratch files still in _tmp): the next run lands the same partitions
    again, over the files the killed one left, and reads nothing of what it left."""
    source = _source(tmp_path / "src")
    january = _land(source, warehouse, "2024-01")
    _finished(warehouse, january)
    catalog_before = _catalog(warehouse)
    root = warehouse.parent / "landing"

    class Killed(BaseException):
        pass

    real_write = landing.atomic_write

    def killed_at_the_catalog(path, text):
        if Path(path).name == landing.CATALOG:
            raise Killed
        real_write(path, text)

    run = pipeline.start_run({"month": "2024-02", "source_dir": str(source), "warehouse": str(warehouse)})
    with monkeypatch.context() as patched:
        patched.setattr(landing, "atomic_write", killed_at_the_catalog)
        patched.setattr(landing.shutil, "rmtree", lambda *a, **k: None)   # killed: no clean-up ran
        with pytest.raises(Killed):
            pipeline.extract_and_land(run)
    assert (root / "orders" / "updated_month=2024-02" / "v1.parquet").exists()   # moved in, not cataloged
    assert _catalog(warehouse) == catalog_before
    # the killed run's scratch files, as a kill during the writes would leave them
    junk = root / "_tmp" / run["run_id"] / "orders"
    junk.mkdir(parents=True, exist_ok=True)
    (junk / "2024-02.parquet").write_bytes(b"half a file")
    february = _land(source, warehouse, "2024-02")
    assert february["tables"]["orders"]["landed"] == ["2024-02"]
    read = february["tables"]["orders"]["partitions"]["2024-02"]
    assert (read["version"], read["landed_by"], _lines(warehouse, read["file"])) == (1, february["run_id"], [4, 5])
    assert {k: read[k] for k in ("rows", "hash")} == fingerprint("orders", ORDERS[2:4])
    assert [v["version"] for v in _catalog(warehouse)["tables"]["orders"]["partitions"]["2024-02"]] == [1]
    assert not any((root / "_tmp").rglob("*")), "the killed run's scratch files are left behind"


# --- a backfill from one export ------------------------------------------------------------------------

def test_a_24_month_backfill_from_one_export_stores_each_row_once(tmp_path, warehouse):
    from tiering.demo import generate
    from tiering.runspec import new_run_id, parse_month

    source = tmp_path / "src"
    counts = generate(source, customers=100, months=24, seed=5, start_month="2022-01", fmt="parquet")
    months = [f"{2022 + i // 12}-{i % 12 + 1:02d}" for i in range(24)]
    # (the landing step's own function: start_run and the warehouse's views add nothing here)
    manifests = [landing.extract_and_land(RunSpec(month=parse_month(m), run_id=new_run_id(parse_month(m)),
                                                  source_dir=source, warehouse=warehouse)) for m in months]
    catalog = _catalog(warehouse)
    for table, entry in catalog["tables"].items():
        # one version of every partition, and every source row in exactly one of them
        assert {len(v) for v in entry["partitions"].values()} <= {1}, table
        if entry["source_file"]:
            assert sum(v[0]["rows"] for v in entry["partitions"].values()) == counts[entry["source_file"]], table
    # each month landed its own month's partitions only (the first: the history before it too)
    for month, manifest in zip(months[1:], manifests[1:], strict=True):
        assert {p for t in manifest["tables"].values() for p in t["landed"]} <= {month}, month
        assert manifest["tables"]["orders"]["landed"] == [month]
    assert manifests[-1]["tables"]["orders"]["rows"] == counts["orders.parquet"]
    landed = sum(p.stat().st_size for p in (warehouse.parent / "landing").rglob("*.parquet"))
    source_size = sum(p.stat().st_size for p in source.iterdir())
    assert landed <= 1.2 * source_size, (landed, source_size)
    shutil.rmtree(source)
