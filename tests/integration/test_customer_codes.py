"""A customer's code sequence number never changes once given (docs/rules.md, Customer code).

Through the pipeline steps and the marts. The source first holds six customers, first seen
(earliest updated_at) one after another:

    C1 2024-01-05   C2 2024-01-10   C3 2024-02-03   C4 2024-02-20   C5 2024-03-04   C6 2024-04-02

January and March are run (February skipped): C1..C5 are numbered 1..5. Then the source changes:
C2 disappears and a late customer L arrives, created before everyone (2022-06-01) and first seen
on 2024-02-10, before C4 and C5, in a month whose successor is computed already. Numbered again
by first appearance (or by created_at), C3..C5 would shift. January is rerun, February run out of
order (after March), March rerun and April run; the first three restate (the change log holds
January to March: C2 gone and L late are a changed history, landed as new partition versions),
April is a plain run. Every customer keeps its number, L gets the next
free one (6) and C6, registered after it, 7; C2's number is never given again; and every run
passes the code test (dbt_project/tests/assert_customer_tier_monthly_customer_code_valid.sql: a
failed dbt test fails the step). (The reruns go from January on: a customer missing from the
previous computed month fails the marts gate, previous_month_customers.still_present.)

On one unchanged source the numbers do not depend on the order the months were run: the changed
source run from scratch out of order numbers its customers by first appearance, then id, as an
in-order run does.
"""
from __future__ import annotations

import duckdb
import pytest

from tests.conftest import run_steps
from tests.fixtures.sources import customer, order, write_source
from tiering import cli
from tiering.codes import validate_code

FIRST_SEEN = {"C1": "2024-01-05", "C2": "2024-01-10", "C3": "2024-02-03", "C4": "2024-02-20",
              "C5": "2024-03-04", "C6": "2024-04-02"}
LATE = customer("L", region="East", created="2022-06-01T00:00:00", updated="2024-02-10T09:00:00")


def _source(directory, with_c2: bool = True, with_late: bool = False):
    ids = [c for c in FIRST_SEEN if with_c2 or c != "C2"]
    customers = [customer(c, region="South", created=f"{FIRST_SEEN[c]}T08:00:00") for c in ids]
    customers += [LATE] if with_late else []
    orders = [order(f"O-{c}", c, f"{100 * (i + 1)}.00", ordered_at=f"{FIRST_SEEN[c]}T12:00:00")
              for i, c in enumerate(ids)]
    orders += [order("O-L", "L", "700.00", ordered_at="2024-02-12T12:00:00")] if with_late else []
    return write_source(directory, customers=customers, orders=orders)


def _run(source, warehouse, months, restated=()):
    """Run the months in this order; those in `restated` as restatements: a changed history of
    months the change log holds is accepted as new partition versions."""
    for month in months:
        conf = {"month": month, "source_dir": str(source), "warehouse": str(warehouse)}
        if month in restated:
            conf.update(restate=True)
        run_steps(conf)


@pytest.fixture(scope="module")
def relaxed_gates(tmp_path_factory):
    """A gates file whose same-month row-count check lets a restatement drop a vanished customer
    (a 2-customer month loses half its rows)."""
    import os

    import yaml

    from tiering.settings import EXPECTATIONS_DIR

    gates = yaml.safe_load((EXPECTATIONS_DIR / "gates.yml").read_text())
    gates.setdefault("thresholds", {})["same_month_row_count_drop"] = 1.0
    path = tmp_path_factory.mktemp("gates") / "gates.yml"
    path.write_text(yaml.safe_dump(gates))
    previous = os.environ.get("TIERING_GATES")
    os.environ["TIERING_GATES"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TIERING_GATES", None)
    else:
        os.environ["TIERING_GATES"] = previous


def _codes(warehouse) -> dict[tuple[str, str], str]:
    """(customer, YYYY-MM) -> customer code, from the marts."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute("select customer_id, strftime(month, '%Y-%m'), customer_code "
                           "from marts.customer_tier_monthly").fetchall()
    finally:
        con.close()
    return {(c, m): code for c, m, code in rows}


def _sequences(codes: dict) -> dict[str, set[int]]:
    """customer -> the sequence numbers its codes carry (one, when stable)."""
    found: dict[str, set[int]] = {}
    for (customer_id, _), code in codes.items():
        found.setdefault(customer_id, set()).add(int(code.split("-")[3]))
    return found


@pytest.fixture(scope="module")
def changed_source_run(tmp_path_factory, relaxed_gates):
    """(codes after the in-order months, codes after the reruns on the changed source, warehouse)."""
    base = tmp_path_factory.mktemp("codes")
    warehouse = base / "wh" / "tiering.duckdb"
    _run(_source(base / "source"), warehouse, ["2024-01", "2024-03"])
    before = _codes(warehouse)
    changed = _source(base / "changed", with_c2=False, with_late=True)
    _run(changed, warehouse, ["2024-01", "2024-02", "2024-03", "2024-04"], restated=("2024-01", "2024-02", "2024-03"))
    # an ad-hoc full refresh leaves the registry alone (full_refresh: false)
    assert cli.main(["dbt", "--warehouse", str(warehouse), "--", "run", "--full-refresh",
                     "--select", "int_customer_code_registry"]) == 0
    return before, _codes(warehouse), warehouse


def test_customers_are_numbered_by_first_appearance(changed_source_run):
    before, _, _ = changed_source_run
    assert _sequences(before) == {"C1": {1}, "C2": {2}, "C3": {3}, "C4": {4}, "C5": {5}}
    assert {m for _, m in before} == {"2024-01", "2024-03"}
    assert all(validate_code(code) for code in before.values())


def test_codes_survive_a_vanished_customer_a_late_one_and_months_out_of_order(changed_source_run):
    before, after, warehouse = changed_source_run
    # every month was (re)run on the changed source: C2 is gone, L is known from February
    assert {c for c, _ in after} == {"C1", "C3", "C4", "C5", "C6", "L"}
    assert {m for c, m in after if c == "L"} == {"2024-02", "2024-03", "2024-04"}
    assert _sequences(after) == {"C1": {1}, "C3": {3}, "C4": {4}, "C5": {5}, "L": {6}, "C6": {7}}
    # the whole code of a customer whose tier, region and scale stayed is unchanged too
    for key, code in before.items():
        if key in after and after[key][:8] == code[:8]:
            assert after[key] == code, key
    assert all(validate_code(code) for code in after.values())
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        registry = con.execute("select customer_id, customer_sequence, strftime(registered_month, '%Y-%m') "
                               "from intermediate.int_customer_code_registry order by 2").fetchall()
        statuses = con.execute("select status, count(*) from audit.runs group by 1").fetchall()
    finally:
        con.close()
    # the registry keeps the vanished customer's number (never given to anyone else), and each
    # customer's number from the run that first knew it, through the full refresh
    assert registry == [("C1", 1, "2024-01"), ("C2", 2, "2024-01"), ("C3", 3, "2024-03"), ("C4", 4, "2024-03"),
                        ("C5", 5, "2024-03"), ("L", 6, "2024-02"), ("C6", 7, "2024-04")]
    assert statuses == [("success", 6)]


def test_one_source_gives_the_same_numbers_whatever_the_order_of_the_months(tmp_path):
    """The changed source run from scratch, months out of order: numbered by first appearance
    (L first seen on 2024-02-10, between C3 and C4), then id, as months run in order would be."""
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    _run(_source(tmp_path / "source", with_c2=False, with_late=True), warehouse, ["2024-03", "2024-01"])
    assert _sequences(_codes(warehouse)) == {"C1": {1}, "C3": {2}, "L": {3}, "C4": {4}, "C5": {5}}
