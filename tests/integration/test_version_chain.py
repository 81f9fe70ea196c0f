"""Which version of an id a month sees, through the version chain of the typed change log: each
typed version keeps the updated_at of the version before it (stg_landing__*.previous_updated_at),
and a month's as-of keeps the version no later one in its reach names. A restatement that puts a
new version between two typed ones must retype the partitions after it, or the month would see
both. A version a month rule rejects is still the latest: the id is left out of that month.

Source, version 1 (line numbers; line 1 is the header), all of customer K1, in EUR:
  orders  2-21  OF0..OF19 1.00 (January 6: filler rows that keep the quarantined share under gate (b))
          22 O1 10.00 (ordered January 10)   23 O1's second version, 20.00 (updated February 15)
          24 O2 30.00 (January 12)           25 O2's second version in XYZ, a currency without rates
                                                (updated February 20): unknown_currency from February
          26/27 O3 5.00 (January 14), the same row twice: one version
Version 2 (before March is restated): line 28, O1's version of January 25, 15.00, between its two.
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, order, write_source
from tests.fixtures.warehouse import query


def _orders(version: int) -> list[dict]:
    rows = [
        *(order(f"OF{i}", "K1", "1.00", "2024-01-06T10:00:00") for i in range(20)),
        order("O1", "K1", "10.00", "2024-01-10T10:00:00"),
        order("O1", "K1", "20.00", "2024-01-10T10:00:00", updated="2024-02-15T10:00:00"),
        order("O2", "K1", "30.00", "2024-01-12T10:00:00"),
        order("O2", "K1", "30.00", "2024-01-12T10:00:00", currency="XYZ", updated="2024-02-20T10:00:00"),
        order("O3", "K1", "5.00", "2024-01-14T10:00:00"),
        order("O3", "K1", "5.00", "2024-01-14T10:00:00"),
    ]
    if version == 2:
        rows.append(order("O1", "K1", "15.00", "2024-01-10T10:00:00", updated="2024-01-25T10:00:00"))
    return rows


def _source(directory: Path, version: int) -> Path:
    return write_source(directory, customers=[customer("K1")], orders=_orders(version))


def _run(source: Path, warehouse: Path, month: str, restate: bool = False) -> dict:
    return run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse), "restate": restate})


def _as_of(warehouse: Path) -> list[tuple]:
    """The as-of orders of the warehouse's last month, but the fillers."""
    return [(o, float(a), c) for o, a, c in query(
        warehouse, "select order_id, amount, currency from intermediate.int_orders__as_of "
                   "where order_id not like 'OF%' order by all")]


def _chain(warehouse: Path) -> list[tuple]:
    """The typed versions of O1..O3: line, is_version, previous updated_at."""
    return [(line, is_version, previous and f"{previous:%m-%d}") for line, is_version, previous in query(
        warehouse, "select source_line, is_version, previous_updated_at from staging.stg_landing__orders "
                   "where order_id not like 'OF%' order by source_line")]


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("version-chain")
    source, warehouse = _source(root / "source", 1), root / "wh" / "tiering.duckdb"
    out = {"warehouse": warehouse, "as_of": {}, "chain": {}, "quarantined": {}}
    for name, month, restate in (("january", "2024-01", False), ("february", "2024-02", False),
                                 ("march", "2024-03", False), ("march restated", "2024-03", True)):
        if name == "march restated":
            _source(source, 2)
        run = _run(source, warehouse, month, restate)
        out["as_of"][name], out["chain"][name] = _as_of(warehouse), _chain(warehouse)
        out["quarantined"][name] = query(warehouse, "select source_line, rule from quarantine.rejected_rows "
                                                    "where run_id = ? order by all", [run["run_id"]])
    out["revenue"] = {f"{m:%Y-%m}": (float(r), n) for m, r, n in query(
        warehouse, "select month, net_revenue, order_count from marts.customer_tier_monthly "
                   "where customer_id = 'K1'")}
    # a warehouse whose orders were typed before the version chain: the next run types them again
    con = duckdb.connect(str(warehouse))
    con.execute("alter table staging.stg_landing__orders drop column is_version")
    con.execute("alter table staging.stg_landing__orders drop column previous_updated_at")
    con.close()
    _run(source, warehouse, "2024-03")
    out["as_of"]["retyped"], out["chain"]["retyped"] = _as_of(warehouse), _chain(warehouse)
    fresh = root / "fresh" / "tiering.duckdb"
    _run(source, fresh, "2024-03")
    out["fresh"] = {"as_of": _as_of(fresh), "chain": _chain(fresh)}
    return out


def test_each_version_names_the_one_before_it(story):
    # O1: lines 22 -> 23; O2: 24 -> 25; O3's identical rows: one version, the last line
    assert story["chain"]["march"] == [(22, True, None), (23, True, "01-10"), (24, True, None),
                                       (25, True, "01-12"), (26, False, None), (27, True, None)]


def test_a_month_sees_the_latest_version_and_leaves_out_one_its_rules_reject(story):
    as_of, revenue = story["as_of"], story["revenue"]
    assert as_of["january"] == [("O1", 10.0, "EUR"), ("O2", 30.0, "EUR"), ("O3", 5.0, "EUR")]
    # February: O1's second version; O2's is in a currency without rates, so O2 is left out (its
    # January version does not count instead) and that version is quarantined
    assert as_of["february"] == as_of["march"] == [("O1", 20.0, "EUR"), ("O3", 5.0, "EUR")]
    assert story["quarantined"]["february"] == story["quarantined"]["march"] == [(25, "unknown_currency")]
    assert revenue["2024-01"] == (20 + 10.0 + 30.0 + 5.0, 23)
    assert revenue["2024-02"] == revenue["2024-03"] == (20 + 20.0 + 5.0, 22)


def test_a_version_restated_between_two_typed_ones_relinks_the_later_partitions(story):
    # O1's January 25 version now comes between lines 22 and 23: February's partition was typed again
    assert story["chain"]["march restated"] == [(22, True, None), (23, True, "01-25"), (24, True, None),
                                                (25, True, "01-12"), (26, False, None), (27, True, None),
                                                (28, True, "01-10")]
    assert story["as_of"]["march restated"] == [("O1", 20.0, "EUR"), ("O3", 5.0, "EUR")]
    assert story["fresh"] == {"as_of": story["as_of"]["march restated"], "chain": story["chain"]["march restated"]}


def test_a_change_log_typed_before_the_version_chain_is_typed_again(story):
    assert story["chain"]["retyped"] == story["chain"]["march restated"]
    assert story["as_of"]["retyped"] == story["as_of"]["march restated"]
