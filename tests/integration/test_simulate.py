"""`tiering simulate` on a hand fixture: the migration between the default pareto rules (80/95)
and 70/90, counted by hand, and nothing live written.

January 2024, net revenue (total 1,000):
    customer  value  prior   80/95  70/90
    S01        300   0.00    A      A
    S02        200   0.30    A      A
    S03        150   0.50    A      A
    S04        100   0.65    A      A
    S05         80   0.75    A      B    <- changes
    S06         60   0.83    B      B
    S07         50   0.89    B      B
    S08         30   0.94    B      C    <- changes
    S09         20   0.97    C      C
    S10         10   0.99    C      C
    S11          0   -       C      C    (its order of February is not visible in January)
Migration (rows current, columns simulated): A -> A 4, A -> B 1; B -> B 2, B -> C 1; C -> C 3.
Revenue shares: current A 83.0%, B 14.0%, C 3.0%; simulated A 75.0%, B 19.0%, C 6.0%.
February is run too, so simulating January finds the as-of rows holding February's and rebuilds
them on the copy from the partitions January's run read (the other path: simulating February uses
them as they are).
"""
from __future__ import annotations

import csv
import hashlib

import pytest

from tests.conftest import run_steps
from tests.fixtures.rules import rules_file
from tests.fixtures.sources import customer, order, write_source
from tests.fixtures.warehouse import query

VALUES = {"S01": 300, "S02": 200, "S03": 150, "S04": 100, "S05": 80, "S06": 60, "S07": 50, "S08": 30,
          "S09": 20, "S10": 10}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    base = tmp_path_factory.mktemp("simulate")
    source = write_source(
        base / "source",
        customers=[customer(f"S{i:02d}") for i in range(1, 12)],
        orders=[*(order(f"O{cid}", cid, f"{v}.00") for cid, v in VALUES.items()),
                order("OS11", "S11", "500.00", ordered_at="2024-02-10T10:00:00")],
    )
    warehouse = base / "wh" / "tiering.duckdb"
    for month in ("2024-01", "2024-02"):
        run_steps({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
    return {"warehouse": warehouse, "rules": rules_file(base / "new", **{"value.pareto": {"a_share": 0.70,
                                                                                         "b_share": 0.90}})}


def _hashes(warehouse):
    from tiering.publish import published_path

    files = [warehouse, published_path(warehouse)]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.exists()}


def test_simulate_migration_counted_by_hand(live, tmp_path, capsys):
    from tiering.cli import main

    warehouse = live["warehouse"]
    before = _hashes(warehouse)
    audit_before = query(warehouse, "select * from audit.runs order by run_id")
    out = tmp_path / "changes.csv"
    assert main(["simulate", "--rules", str(live["rules"]), "--month", "2024-01", "--out", str(out),
                 "--warehouse", str(warehouse)]) == 0
    printed = capsys.readouterr().out
    assert "as-of rows rebuilt from them on the copy" in printed
    lines = printed.splitlines()
    table = {line.split()[0]: line.split()[1:] for line in lines if line[:1] in "ABCD" and len(line.split()) == 5}
    assert table == {"A": ["5", "83.0%", "4", "75.0%"], "B": ["3", "14.0%", "3", "19.0%"],
                     "C": ["3", "3.0%", "4", "6.0%"], "D": ["0", "0.0%", "0", "0.0%"]}
    matrix = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in lines
              if line.startswith("  ") and line.split()[0] in "ABCD" and len(line.split()) == 6}
    assert matrix == {"A": [4, 1, 0, 0, 5], "B": [0, 2, 1, 0, 3], "C": [0, 0, 3, 0, 3], "D": [0, 0, 0, 0, 0]}
    assert "2 customer(s) would change tier" in printed
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["customer_id"], r["current_tier"], r["simulated_tier"], r["current_ranking_value"],
             r["simulated_ranking_value"]) for r in rows] == [("S05", "A", "B", "80.0", "80.0"),
                                                               ("S08", "B", "C", "30.0", "30.0")]
    # nothing live changed: the warehouse file, the published copy, audit
    assert _hashes(warehouse) == before
    assert query(warehouse, "select * from audit.runs order by run_id") == audit_before


def test_simulate_uses_held_as_of_rows_and_same_rules_change_nothing(live, capsys):
    from tiering.simulate import simulate

    before = _hashes(live["warehouse"])
    result = simulate(live["warehouse"], rules_file(live["warehouse"].parent.parent / "same"), _month("2024-02"))
    assert not result["as_of_rebuilt"]
    assert result["changes"] == []
    assert result["current"] == result["simulated"]
    # February: S11's 500 is visible, so it ranks first
    assert result["current"]["A"]["customers"] == 5
    assert _hashes(live["warehouse"]) == before


def test_simulate_unknown_month_is_a_clear_error(live, capsys):
    from tiering.cli import main

    assert main(["simulate", "--rules", str(live["rules"]), "--month", "2023-12",
                 "--warehouse", str(live["warehouse"])]) == 1
    err = capsys.readouterr().err
    assert "month 2023-12 has no successful run" in err and len(err.strip().splitlines()) == 1


def _month(text):
    from tiering.runspec import parse_month

    return parse_month(text)
