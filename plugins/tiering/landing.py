"""Extract a month's as-of rows from the source and land them immutably.

One folder per run, `<landing root>/<run_id>/`, holding one Parquet file per
source table (original text values plus `_source_file` and `_source_line`)
and `_manifest.json` (row counts and SHA-256 of every landed file). A landing
folder is written once: if it exists the task refuses to overwrite it. It is
written as `<run_id>.partial` and renamed when complete; a retried task removes
its own earlier attempt's `.partial` folder first.
"""
from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from tiering.errors import TieringError
from tiering.files import replace_atomically, sha256_file
from tiering.increment import Base, find_base, history_unchanged, plan_table, same_file_as_base
from tiering.reproduce import check_reproduces
from tiering.rules import load_rules
from tiering.runspec import RunSpec
from tiering.source import (
    LOAD_ORDER,
    TABLES,
    Delta,
    TableSpec,
    carried_collisions,
    check_source_dir,
    columns_of_record,
    delta_line_ranges,
    extract_as_of_to,
    fingerprint_of_landing,
    fingerprints,
    row_group_times,
    source_rows,
    sql_literal,
)
from tiering.warehouse import apply_settings

MANIFEST = "_manifest.json"
BASE_WAREHOUSE = "base_warehouse"   # the warehouse, attached read-only to the landing's connection


class LandingError(TieringError):
    pass




def extract_and_land(spec: RunSpec) -> dict:
    check_source_dir(spec.source_dir)
    target = spec.landing_dir
    if target.exists():
        raise LandingError(f"landing folder {target} already exists: landed batches are immutable, "
                           f"start a new run (new run id) instead")
    # written as <run_id>.partial and renamed when complete (a landing folder is complete or absent);
    # a leftover of this run's own earlier attempt (a failed or killed task being retried) is removed
    # first: the run id is the run's own, so nothing else writes there
    with replace_atomically(target, staging=target.with_name(target.name + ".partial")) as staging:
        staging.mkdir(parents=True)
        manifest = _land(spec, staging)
    for f in target.iterdir():
        f.chmod(0o444)
    return manifest


def _land(spec: RunSpec, staging: Path) -> dict:
    base, no_base = find_base(spec, load_rules(spec.rules_path).version)
    con = apply_settings(duckdb.connect())
    if base is not None:   # (its quarantine records: the carried rows of a byte-identical file)
        con.execute(f"attach {sql_literal(str(spec.warehouse))} as {BASE_WAREHOUSE} (read_only)")
    tables: dict[str, dict] = {}
    incremental: set[str] = set()   # tables whose rows before the base's cutoff are the base's
    paths = {name: TABLES[name].path_in(spec.source_dir) for name in LOAD_ORDER}
    # the source files' SHA-256, computed in a thread of their own in load order while DuckDB
    # reads the tables before (hashlib releases the GIL): 3.6 GB at 1M customers
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    hashes = {name: hasher.submit(sha256_file, path) for name, path in paths.items() if path is not None}
    try:
        cutoffs = [spec.as_of_cutoff, *([base.cutoff] if base and base.cutoff != spec.as_of_cutoff else [])]
        for name in LOAD_ORDER:
            path = paths[name]
            if path is None:
                if history_unchanged(base, name, None, None)[0]:
                    incremental.add(name)
                continue
            with source_rows(con, TABLES[name], path) as rows:   # a CSV is read once for the three passes
                tables[name] = _land_table(con, spec, name, path, rows, staging, cutoffs, base, no_base,
                                           incremental, hashes[name])
        if not spec.restate:   # a plain rerun reproduces the month's last successful run, or fails
            check_reproduces(con, spec, tables, paths)
    finally:
        hasher.shutdown(wait=True, cancel_futures=True)
        con.close()
    manifest = {
        "run_id": spec.run_id,
        "month": spec.month_text,
        "source_dir": str(Path(spec.source_dir).resolve()),
        "as_of_cutoff": spec.as_of_cutoff,
        "restatement": spec.restate,
        "base_run_id": base.run_id if base else None,
        # every versioned table a delta on the base (or absent then and now): the batch is the base's
        # plus this folder's rows, so staging may be updated in place (tiering.pipeline.transform_staging)
        "delta_on": base.run_id if base and all(n in incremental for n, t in TABLES.items() if t.versioned)
        else None,
        "landed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": tables,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _land_table(con: duckdb.DuckDBPyConnection, spec: RunSpec, name: str, path: Path, rows: str, folder: Path,
                cutoffs: list[str], base: Base | None, no_base: str, incremental: set[str],
                source_sha256: Future[str]) -> dict:
    """Land one table in full or as a delta on `base` (tiering.increment) into `folder`; returns
    its manifest entry. `incremental` collects the tables whose rows before the base's cutoff are
    the base's, on which the later tables' plans depend. `source_sha256`: the source file's
    SHA-256, being computed beside.

    When the source file is byte for byte the one the base run landed (same SHA-256), its rows
    before the base's cutoff are the base's: the fingerprint scan of the whole file is skipped and
    the fingerprint at the run's cutoff is the base's plus that of the rows landed now
    (fingerprint_of_landing). A backfill or a rerun reads one export many times."""
    table_spec = TABLES[name]
    source_sha256 = source_sha256.result()
    same_file = table_spec.versioned and same_file_as_base(base, name, path.name, source_sha256)
    found = None if same_file else fingerprints(con, table_spec, path, cutoffs, rows)
    unchanged, why = (True, "") if same_file else history_unchanged(base, name, path.name, found)
    entry = {"source_file": path.name, "source_sha256": source_sha256, "landing": "full"}
    delta, why_full = plan_table(base, name, unchanged, no_base or why, incremental)
    if delta is not None and not table_spec.versioned:
        delta, why_full = None, "not versioned (no updated_at): always landed in full"
        incremental.add(name)     # ... but unchanged, so the tables depending on it may be deltas
    if delta is not None and _carried_rows_clash(con, table_spec, path, delta, rows, base):
        delta, why_full = None, ("a row the base run quarantined shares its id and updated_at with a "
                                 "loaded row: landed in full, so that the conflicting-versions rule sees both")
    if delta is None:
        entry["full_reason"] = why_full
        if table_spec.versioned and path.suffix == ".parquet":
            # its row groups' times too, for a delta on this run that reads the same file
            # (_skipping_old_row_groups): that run then reads only the newer row groups
            entry["row_group_times"] = row_group_times(con, table_spec, path)
    else:
        incremental.add(name)
        entry.update(landing="delta", base_run_id=base.run_id, since=delta.since,
                     carried_rows=len(delta.carried_lines))
        if same_file and path.suffix == ".parquet":
            delta = _skipping_old_row_groups(con, table_spec, path, delta, base, entry)
    out = folder / f"{name}.parquet"
    landed = extract_as_of_to(con, table_spec, path, spec.as_of_cutoff, out, delta, rows)
    if found is None:
        found = fingerprint_of_landing(con, table_spec, out, spec.as_of_cutoff,
                                       base.tables[name]["fingerprint"] if delta is not None else None)
        entry["fingerprint_from"] = "base run and landed rows" if delta is not None else "landed rows"
    entry.update(rows=landed, landed_file=out.name, landed_sha256=sha256_file(out),
                 fingerprint={"cutoff": spec.as_of_cutoff, **found[spec.as_of_cutoff]},
                 snapshot_rows=found[spec.as_of_cutoff]["rows"] + found["unparseable"])
    return entry


def _carried_rows_clash(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path, delta: Delta, rows: str,
                        base: Base) -> bool:
    """Whether a row the base run quarantined (carried by `delta`) shares its id and updated_at with
    a row of the base's batch that was loaded. The base run's load counted that among the rows it
    landed (Base.clashes; its inherited rows were checked against its carried ones when it
    landed); a base loaded before that count was kept has its source scanned (carried_collisions)."""
    if not delta.carried_lines:
        return False
    counted = base.clashes.get(spec.name)
    if counted is not None:
        return counted > 0
    return carried_collisions(con, spec, path, delta, rows) > 0


def _skipping_old_row_groups(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path, delta: Delta,
                             base: Base, entry: dict) -> Delta:
    """`delta` reading only the row groups of the Parquet source that can hold its rows (and the
    carried rows): the row groups' times (tiering.source.row_group_times) are the base run's
    when it kept them for this very file (same SHA-256; a run keeps them when it lands a Parquet
    table in full, and passes them on when it lands a delta), else read once now and kept in the
    manifest for the next run. A source exported once and landed month after month (a backfill,
    a rerun) is then read from its newer row groups only."""
    kept = base.tables[spec.name].get("row_group_times")
    entry["row_group_times"] = kept if kept is not None else row_group_times(con, spec, path)
    since_us = con.execute(f"select epoch_us(timestamptz {sql_literal(delta.since)})").fetchone()[0]
    ranges = delta_line_ranges(entry["row_group_times"], since_us)
    # (the row groups read: those in the ranges)
    entry["row_groups_read"] = sum(1 for first, count, *_ in entry["row_group_times"]
                                   if any(low <= first <= high for low, high in ranges))
    delta = replace(delta, line_ranges=ranges, unparseable_ranges=delta_line_ranges(entry["row_group_times"], None))
    if delta.carried_lines:
        entry["carried_rows_from"] = f"quarantine.rejected_rows of run {base.run_id}"
        delta = replace(delta, carried_rows=_quarantined_records(spec, path, base))
    return delta


def _quarantined_records(spec: TableSpec, path: Path, base: Base) -> str:
    """SQL: the rows of `spec`'s table the base run quarantined, as landed (the source columns as
    text, `_source_line`, `_source_file`), from their records in the warehouse's quarantine.
    Taken for a delta on a byte-identical source file: they are then the source's lines
    (tests/integration/test_incremental_landing.py compares every result with a full landing),
    read without the row groups they are spread over (one month's orders at 1M customers:
    233,383 carried rows in all 59 row groups, 2.2 s of the delta's copy)."""
    return (f"select {columns_of_record(spec)}, source_line as _source_line, {sql_literal(path.name)} as _source_file "
            f"from {BASE_WAREHOUSE}.quarantine.rejected_rows "
            f"where run_id = {sql_literal(base.run_id)} and source_table = {sql_literal(spec.name)} "
            f"and source_line is not null")


def read_manifest(spec: RunSpec) -> dict:
    path = spec.landing_dir / MANIFEST
    if not path.exists():
        raise LandingError(f"no landed batch for run {spec.run_id} at {spec.landing_dir}; run extract first")
    return json.loads(path.read_text())
