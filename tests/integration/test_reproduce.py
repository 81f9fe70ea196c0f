"""A changed history through the command line: March of the small demo source is run, then 60% of
its orders disappear from the source (and a late March order appears). A plain rerun fails with
one line naming what changed in the change log and writes nothing; `--restate` fails on the
landed gate's same_month_row_count_drop; with that threshold relaxed ($TIERING_GATES) the
restatement succeeds, replaces the month and reports what it changed.
First, the warehouse folder copied elsewhere (the original moved away) reruns March from its own
change log and gives the same rows."""
from __future__ import annotations

import csv
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import run_steps
from tests.fixtures.warehouse import query
from tiering import landing
from tiering.explain import explain
from tiering.runspec import RunSpec, parse_month
from tiering.settings import EXPECTATIONS_DIR, landing_root

MONTH = "2024-03"


def _reason_lines(err: str) -> list[str]:
    """stderr of a failed run, less the line naming its log file (tiering.console): the reason."""
    return [line for line in err.splitlines() if not line.startswith("log: ")]


def _revenue(warehouse: Path) -> float:
    return float(query(warehouse, "select sum(net_revenue) from marts.tier_summary_monthly "
                                  "where month = date '2024-03-01'")[0][0])


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from tiering.cli import main

    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _log(warehouse: Path) -> dict[str, bytes]:
    root = landing_root(warehouse)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_runs" not in p.parts}


@pytest.fixture(scope="module")
def month_run(demo_source, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("reproduce")
    source, warehouse = root / "source", root / "wh" / "tiering.duckdb"
    shutil.copytree(demo_source, source)
    first = run_steps({"month": MONTH, "source_dir": str(source), "warehouse": str(warehouse)})
    return {"root": root, "source": source, "warehouse": warehouse, "first": first,
            "revenue": _revenue(warehouse)}


def _is_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _drop_60_percent_of_orders(source: Path) -> tuple[list[str], int]:
    """Keep 2 orders of every 5 and add a late March order; returns the months up to March whose
    rows changed and how many of the rows March's run read are gone. (The demo's updated_at are
    'YYYY-MM-DDTHH:MM:SS' in UTC: a row's month is its first 7 characters, unless it is no date,
    such as 2024-01-32: then its row is in the partition 'unparseable', whose changes are none.)"""
    path = source / "orders.csv"
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    kept, dropped = [r for i, r in enumerate(rows) if i % 5 >= 3], [r for i, r in enumerate(rows) if i % 5 < 3]
    kept.append({**kept[0], "order_id": "O-LATE", "ordered_at": "2024-03-20T10:00:00",
                 "updated_at": "2024-03-20T10:00:00"})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(kept)
    gone = [r["updated_at"][:7] for r in dropped if _is_timestamp(r["updated_at"]) and r["updated_at"][:7] <= MONTH]
    return sorted({*gone, MONTH}), len(gone)


def _month_rows(warehouse: Path) -> list[tuple]:
    return query(warehouse, "select * exclude (run_id) from marts.customer_tier_monthly "
                            "where month = date '2024-03-01' order by all")


def test_a_copied_warehouse_folder_reruns_from_its_own_change_log(month_run):
    """The catalog and the manifests name the landed files relative to the landing root, and a run's
    manifest is looked up in the warehouse's landing root: the copy, with the original folder gone,
    reads its own files and gives the same rows."""
    root, source, first = month_run["root"], month_run["source"], month_run["first"]
    original, away = month_run["warehouse"].parent, root / "wh-away"
    shutil.copytree(original, root / "copy" / "wh", symlinks=True)
    warehouse, copied = root / "copy" / "wh" / "tiering.duckdb", root / "copy" / "wh" / "landing"
    original.rename(away)          # the original folder is gone while the copy runs
    try:
        # the month's last successful run and its manifest are found in the copy
        spec = RunSpec(month=parse_month(MONTH), run_id="probe", source_dir=source, warehouse=warehouse)
        assert landing.last_successful_run(spec) == (first["run_id"], copied / "_runs" / f"{first['run_id']}.json")
        rerun = run_steps({"month": MONTH, "source_dir": str(source), "warehouse": str(warehouse)})
        stored = json.loads((copied / "_runs" / f"{rerun['run_id']}.json").read_text())
        assert stored["tables"]["orders"]["partitions"]["2024-03"]["file"] == "orders/updated_month=2024-03/v1.parquet"
        assert stored["tables"]["orders"]["landed"] == []
        # the landing views and staging read the copy's files, by absolute path
        files = [f for (f,) in query(warehouse, "select landing_file from landing.partitions")]
        assert files and all(f.startswith(f"{copied}/") and Path(f).exists() for f in files)
        assert query(warehouse, "select count(*) from staging.stg_landing__orders "
                                "where not starts_with(landing_file, ?)", [f"{copied}/"]) == [(0,)]
        inputs = explain(warehouse, query(warehouse, "select min(customer_id) from marts.customer_tier_monthly")[0][0],
                         parse_month(MONTH))["inputs"]
        assert inputs["available"] and inputs["checksum_matches"]
        assert inputs["manifest"] == str(copied / "_runs" / f"{rerun['run_id']}.json")
        rows = _month_rows(warehouse)
    finally:
        away.rename(original)
    assert rows == _month_rows(month_run["warehouse"]) and len(rows) > 100


def test_a_changed_source_fails_a_plain_rerun_and_restate_accepts_it_within_the_gate(month_run, capsys,
                                                                                     monkeypatch):
    source, warehouse = month_run["source"], month_run["warehouse"]
    args = ["--source", str(source), "--month", MONTH, "--warehouse", str(warehouse)]
    months, gone = _drop_60_percent_of_orders(source)
    assert months == ["2024-01", "2024-02", "2024-03"] and gone > 300
    log = _log(warehouse)

    # a plain rerun: exit 1, one line naming what changed; nothing is landed nor replaced
    code, _, err = _cli(capsys, *args)
    assert code == 1 and len(_reason_lines(err)) == 1, err
    assert err.endswith(f"the source's history up to {MONTH} differs from the change log (orders: 3 month(s) "
                        f"changed ({', '.join(months)}): {gone} row(s) gone, 1 row(s) new, 0 row(s) changed); "
                        f"rerun with --restate to land it as a new version"), err
    assert _revenue(warehouse) == month_run["revenue"]
    assert _log(warehouse) == log

    # --restate: the landed gate still compares the rows read with the month's last successful run
    code, _, err = _cli(capsys, *args, "--restate")
    assert code == 1 and len(_reason_lines(err)) == 1, err
    assert "landed.orders.same_month_row_count_drop" in err, err
    assert _revenue(warehouse) == month_run["revenue"]

    # ... which a relaxed threshold lets through: the month is replaced and the diff reported
    gates = month_run["root"] / "gates.yml"
    gates.write_text((EXPECTATIONS_DIR / "gates.yml").read_text().replace(
        "same_month_row_count_drop: 0.10", "same_month_row_count_drop: 0.7"))
    monkeypatch.setenv("TIERING_GATES", str(gates))
    code, out, err = _cli(capsys, *args, "--restate")
    assert code == 0, err
    restated = query(warehouse, "select run_id from audit.runs where month = date '2024-03-01' and status = 'success' "
                                "order by finished_at desc limit 1")[0][0]
    changed = query(warehouse, "select count(distinct customer_id) from audit.restatement_diffs "
                               "where run_id = ? and column_name = 'final_tier'", [restated])[0][0]
    assert changed > 0
    assert re.search(rf"{changed} customer\(s\) with another final tier", out), out
    assert _revenue(warehouse) < 0.6 * month_run["revenue"]
