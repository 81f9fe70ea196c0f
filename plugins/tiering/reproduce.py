"""A plain rerun of a month must reproduce its last successful run, or fail.

Before a run's landing is complete (tiering.landing), its as-of rows of every table are compared
with what the month's last successful run landed: first by the fingerprint each landing keeps
(row count and a sum of row hashes, `_manifest.json`), and only when that differs row by row,
against that run's landed batch (its landed file, and for a delta the files of its base runs).
Rows gone, and rows changed or new before the cutoff (late rows), make the run fail with one
line that counts them per table; `tiering run --restate` is the one way to accept them. A
re-export that only moved rows to other lines changes the fingerprint but no row: it passes.
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb

from tiering.errors import TieringError
from tiering.runspec import RunSpec
from tiering.source import TABLES, _as_of_filter, _run, source_rows, sql_literal


class SourceChangedError(TieringError):
    """The source of a month differs from the one its last successful run read."""


def last_successful_run(spec: RunSpec) -> tuple[str, Path] | None:
    """(run id, landing folder) of the month's latest successful run other than this one."""
    if not Path(spec.warehouse).exists():
        return None
    from tiering.warehouse import connect

    con = connect(spec.warehouse, read_only=True)
    try:
        row = con.execute("""select run_id, landing_dir from audit.runs
                             where month = ? and status = 'success' and run_id <> ?
                             order by finished_at desc nulls last, run_id desc limit 1""",
                          [spec.month, spec.run_id]).fetchone()
        return (row[0], Path(row[1])) if row else None
    finally:
        con.close()


def check_reproduces(con: duckdb.DuckDBPyConnection, spec: RunSpec, tables: dict, paths: dict) -> None:
    """Raise SourceChangedError when this (plain) run's as-of rows differ from those of the
    month's last successful run. `tables`: this landing's manifest entries; `paths`: the source
    file of each table (None: absent)."""
    previous = last_successful_run(spec)
    if previous is None:
        return
    run_id, landing_dir = previous
    manifest = _manifest(landing_dir)
    if manifest is None:
        print(f"reproducibility not checked: the landing of run {run_id} ({landing_dir}) is gone")
        return
    changes = []
    for name in TABLES:
        before, now = manifest["tables"].get(name), tables.get(name)
        if before is None and now is None or _same_fingerprint(before, now):
            continue
        gone, changed = _row_changes(con, spec, name, landing_dir, paths.get(name))
        if gone or changed:
            changes.append(f"{name} {gone} rows gone, {changed} changed")
    if changes:
        # (a restatement saw the rows updated up to its own cutoff: a plain rerun cannot give its result)
        restated = f" (a restatement as of {manifest['as_of_cutoff']})" if manifest.get("restatement") else ""
        raise SourceChangedError(
            f"the source for {spec.month_text} differs from its last successful run {run_id}{restated}: "
            f"{'; '.join(changes)}; rerun with --restate to accept it")


def _manifest(landing_dir: Path) -> dict | None:
    path = Path(landing_dir) / "_manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def _same_fingerprint(before: dict | None, now: dict | None) -> bool:
    if before is None or now is None or "fingerprint" not in before or "fingerprint" not in now:
        return False
    return before["fingerprint"] == now["fingerprint"]


def _landed_files(folder: Path, table: str) -> list[str]:
    """The landed files whose rows make up the batch of `table` of the run landed in `folder`: its
    own, and for a delta its base run's batch (tiering.increment), back to a landing in full. The
    landing folders of a warehouse are siblings, named by run id."""
    files, entry = [], (_manifest(folder) or {"tables": {}})["tables"].get(table)
    while entry is not None:
        files.append(str(folder / entry["landed_file"]))
        if entry.get("landing") != "delta":
            break
        folder = folder.parent / entry["base_run_id"]
        base = _manifest(folder)
        if base is None:
            raise SourceChangedError(f"cannot compare {table} with the month's last successful run: the landing "
                                     f"of its base run {entry['base_run_id']} is gone; rerun with --restate")
        entry = base["tables"].get(table)
    return files


def _row_changes(con: duckdb.DuckDBPyConnection, spec: RunSpec, name: str, folder: Path,
                 path: Path | None) -> tuple[int, int]:
    """(rows gone, ids changed or new) of `name` between the run's batch and the source's as-of rows
    now; compared by id and content (not by line)."""
    table = TABLES[name]
    key = "concat_ws(chr(31), " + ", ".join(table.key) + ")"
    content = "md5(concat_ws(chr(31), " + ", ".join(f"coalesce({c}, chr(0))" for c in table.columns) + "))"
    cols = ", ".join(table.columns)
    files = _landed_files(folder, name)
    before = (f"select distinct {cols}, _source_line from read_parquet([{', '.join(map(sql_literal, files))}])"
              if files else f"select {', '.join(f'null::varchar as {c}' for c in table.columns)} where false")

    def compare(now: str) -> tuple[int, int]:
        return _run(con, path or Path(name), f"""
            with before as (select {key} as k, {content} as h from ({before})),
                 now as (select {key} as k, {content} as h from ({now})),
                 removed as (select k, h from before except all select k, h from now),
                 added as (select k, h from now except all select k, h from before)
            select (select count(*) from removed where k not in (select k from added)),
                   (select count(distinct k) from added)""")[0]

    if path is None:
        return compare(f"select {', '.join(f'null::varchar as {c}' for c in table.columns)} where false")
    with source_rows(con, table, path) as rows:
        return compare(f"select * from ({rows}) where {_as_of_filter(table, spec.as_of_cutoff)}")
