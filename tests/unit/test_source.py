"""tiering.source.partition_of: the change-log partition of an updated_at, on every shape a source
may hold (the usual UTC shape takes a fast path; every other the general timestamptz one)."""
import duckdb
import pytest

from tiering.source import TABLES, partition_of

CASES = [
    ("2024-03-05T10:00:00", "2024-03"),
    ("2024-03-31T23:30:00Z", "2024-03"),
    ("2024-03-31T23:30:00-02:00", "2024-04"),     # an offset: the UTC month
    ("2024-03-01T00:30:00+01:00", "2024-02"),
    ("2024-03-31 23:30:00+00", "2024-03"),
    ("2024-03-05", "2024-03"),
    ("2024-03-05T10:00", "2024-03"),
    ("2024-03-05T10:00:00.5Z", "2024-03"),
    ("2024-3-5", "2024-03"),
    ("2024/03/05", "2024-03"),
    ("1899-12-31T00:00:00", "1899-12"),          # placed; the row rules reject it
    ("2024-02-30T00:00:00", "unparseable"),      # the usual shape, but no such day
    ("2024-03-05T25:00:00", "unparseable"),
    ("2024-13-01T00:00:00", "unparseable"),
    ("12024-01-05T10:00:00", "unparseable"),     # five digits: would sort before 2024
    ("-0044-03-15", "unparseable"),
    ("infinity", "unparseable"),
    ("epoch", "unparseable"),
    ("05/03/2024", "unparseable"),
    (" 2024-03-05 ", "unparseable"),
    ("", "unparseable"),
    (None, "unparseable"),
]


@pytest.mark.parametrize(("updated_at", "partition"), CASES)
def test_partition_of_updated_at(updated_at, partition):
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    assert con.execute(f"select {partition_of(TABLES['orders'])} from (select ?::varchar as updated_at)",
                       [updated_at]).fetchone()[0] == partition


@pytest.mark.parametrize(("month", "partition"), [("2024-03", "2024-03"), (" 2024-03 ", "2024-03"),
                                                  ("2024-13", "unparseable"), ("2024-3", "unparseable"),
                                                  ("12024-01", "unparseable"), (None, "unparseable")])
def test_partition_of_fx_rate_month(month, partition):
    con = duckdb.connect()
    assert con.execute(f"select {partition_of(TABLES['fx_rates'])} from (select ?::varchar as month)",
                       [month]).fetchone()[0] == partition
