"""The customer keys a PostgreSQL publish adds (tiering.pg_publish._CustomerKeys): the potential
step's stored keys when they are the current secret's, else computed, once per id."""
from __future__ import annotations

import duckdb
import pyarrow as pa

from tiering import pseudonym
from tiering.pg_publish import _CustomerKeys
from tiering.pseudonym import customer_key

IDS = ["C2", "C3", "C1", "C2"]


def _con(stored: list[tuple[str, str]] | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if stored is not None:
        con.execute("create schema potential; create table potential.customer_keys "
                    "(customer_id varchar, customer_key varchar)")
        for row in stored:
            con.execute("insert into potential.customer_keys values (?, ?)", row)
    return con


def test_keys_are_the_pseudonyms_with_or_without_stored_ones(monkeypatch):
    expected = [customer_key(c) for c in IDS]
    for stored in (None, [], [(c, customer_key(c)) for c in ("C1", "C2")],
                   [("C1", "k_from_another_secret"), ("C2", "k_other")]):
        keys = _CustomerKeys(_con(stored))
        assert keys.of(pa.array(IDS)).to_pylist() == expected, stored
        assert keys.of(pa.chunked_array([IDS[:2], IDS[2:]])).to_pylist() == expected, stored


def test_stored_keys_are_used_and_each_other_id_is_keyed_once(monkeypatch):
    computed = []
    original = pseudonym.customer_keys
    monkeypatch.setattr(pseudonym, "customer_keys", lambda ids: computed.extend(ids) or original(ids))
    keys = _CustomerKeys(_con([(c, customer_key(c)) for c in ("C1", "C2")]))
    keys.of(pa.array(IDS))
    keys.of(pa.array(["C3", "C4"]))
    assert computed == ["C3", "C4"]
