"""Incremental landing: a month lands only what changed since an earlier successful run.

A month's batch is, by the contract, every source row updated before the month's cutoff. Most of
those rows were landed, checked and loaded by the run of an earlier month already. So a run
looks for a *base*: the latest successful, non-restatement run of a month at or before its own,
under the same rules, whose landing manifest holds a fingerprint of the table (row count and
the sum of a hash of every row's values and line number, before the base's cutoff). When the
source's rows before that cutoff still have the same fingerprint, the table is landed as a
*delta*:

- the rows updated at or after the base's cutoff (and before the run's own),
- the rows whose updated_at cannot be parsed (as in a full landing: they are quarantined), and
- the rows the base run quarantined (by line: equal fingerprints mean equal lines), checked
  again, since a customer or invoice they refer to may exist by now.

The batch of the run is then its own loaded rows plus the base's batch (`raw.batch_lineage`
lists the runs whose rows make up each run's batch, per table), and every result equals a full
landing's: a row valid in the base run stays valid later (rules only ever find more customers,
invoices and fx rates as the cutoff moves on; see tiering.load for the two checks that look at
the inherited rows). When the fingerprint differs (old rows were changed, removed or moved: a
restated history), the table is landed in full and the manifest says why.

`TIERING_LANDING=full` turns this off (every table landed in full, as for restatements).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tiering.runspec import RunSpec, add_months
from tiering.source import Delta, depends_on

MODES = ("incremental", "full")


def landing_mode() -> str:
    mode = os.environ.get("TIERING_LANDING", "incremental").strip().lower()
    if mode not in MODES:
        from tiering.errors import TieringError
        raise TieringError(f"TIERING_LANDING={mode!r}: expected one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class Base:
    """The earlier run a delta builds on."""
    run_id: str
    cutoff: str
    tables: dict = field(default_factory=dict)       # its manifest's tables
    quarantined_lines: dict = field(default_factory=dict)   # table -> (line, ...)
    # table -> how many of its quarantined rows share id and updated_at with a row it loaded
    # (audit.load_batches.quarantined_clashes; absent: not counted, the source is scanned instead)
    clashes: dict = field(default_factory=dict)


def find_base(spec: RunSpec, rule_version: str) -> tuple[Base | None, str]:
    """The base run for `spec` and a one-line reason when there is none."""
    if spec.restate:
        return None, "a restatement lands every table in full"
    if landing_mode() == "full":
        return None, "TIERING_LANDING=full"
    if not Path(spec.warehouse).exists():
        return None, "no earlier run in this warehouse"
    from tiering.warehouse import connect

    con = connect(spec.warehouse, read_only=True)
    try:
        runs = con.execute("""
            select run_id, month, landing_dir from audit.runs
            where status = 'success' and not coalesce(restatement, false) and rule_version = ?
              and month <= ? and run_id <> ?
            order by month desc, finished_at desc, run_id desc
        """, [rule_version, spec.month, spec.run_id]).fetchall()
        for run_id, month, landing_dir in runs:
            manifest_path = Path(landing_dir) / "_manifest.json"
            if not manifest_path.exists():
                continue
            manifest = json.loads(manifest_path.read_text())
            if not any("fingerprint" in t for t in manifest.get("tables", {}).values()):
                continue  # landed before fingerprints were kept
            lines: dict[str, list[int]] = {}
            for table, line in con.execute(
                    "select source_table, source_line from quarantine.rejected_rows where run_id = ? "
                    "and source_line is not null order by source_table, source_line", [run_id]).fetchall():
                lines.setdefault(table, []).append(line)
            clashes = dict(con.execute(
                "select source_table, quarantined_clashes from audit.load_batches where run_id = ? "
                "and quarantined_clashes is not null", [run_id]).fetchall())
            return Base(run_id=run_id, cutoff=f"{add_months(month, 1)}", tables=manifest["tables"],
                        quarantined_lines={t: tuple(v) for t, v in lines.items()}, clashes=clashes), ""
    finally:
        con.close()
    return None, "no earlier successful run under these rules"


def history_unchanged(base: Base | None, table: str, source_file: str | None, current: dict | None
                      ) -> tuple[bool, str]:
    """Whether the source's rows of `table` visible before the base's cutoff are the ones the base
    run landed (same file name, same fingerprint), and why not. `current` holds the source's
    fingerprints (tiering.source.fingerprints) with the base's cutoff among them; a table absent
    now and at the base is unchanged."""
    if base is None:
        return False, "no base run"
    landed = base.tables.get(table)
    if source_file is None or landed is None:
        return (source_file is None and landed is None), f"{table} appeared or disappeared since run {base.run_id}"
    if "fingerprint" not in landed:
        return False, f"the base run {base.run_id} kept no fingerprint of {table}"
    if landed["source_file"] != source_file:
        return False, f"the source file changed from {landed['source_file']} to {source_file}"
    expected, found = landed["fingerprint"], current[base.cutoff]
    if (found["rows"], found["hash"]) != (expected["rows"], expected["hash"]):
        return False, (f"its rows visible before {base.cutoff} changed since run {base.run_id} "
                       f"({expected['rows']} rows then, {found['rows']} now, or other values)")
    return True, ""


def same_file_as_base(base: Base | None, table: str, source_file: str, source_sha256: str) -> bool:
    """Whether `source_file` is byte for byte the file the base run landed `table` from (name and
    SHA-256), with the base's fingerprint kept: its rows before the base's cutoff are then the
    base's, without a scan (tiering.landing)."""
    landed = base.tables.get(table) if base is not None else None
    return (landed is not None and "fingerprint" in landed and landed.get("source_file") == source_file
            and landed.get("source_sha256") == source_sha256)


def plan_table(base: Base | None, table: str, unchanged: bool, why: str, incremental_so_far: set[str]
               ) -> tuple[Delta | None, str]:
    """A Delta on `base` for a versioned table, or None (landed in full) and why. A table is only
    landed as a delta when every table its rows' validity depends on (tiering.source.depends_on)
    is unchanged too: else an inherited row might no longer be valid."""
    if not unchanged:
        return None, why
    blocked = [d for d in depends_on(table) if d not in incremental_so_far]
    if blocked:
        return None, f"depends on {', '.join(blocked)}, landed in full"
    return Delta(since=base.cutoff, carried_lines=base.quarantined_lines.get(table, ())), ""
