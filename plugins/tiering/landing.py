"""Landing: the source as an append-only change log, one partition per month.

    <landing root>/<table>/<updated_month | rate_month>=<YYYY-MM | unparseable>/v<N>.parquet
    <landing root>/customers_personal/updated_month=<YYYY-MM>/v<N>.parquet
    <landing root>/_catalog.json        every partition version with its fingerprint
    <landing root>/_runs/<run_id>.json  what one run read: the partition versions of each table

A row lands in the partition of its `updated_at` month in UTC (fx_rates: of its `month`), as text
exactly as in the source, with `_source_file`, `_source_line` and `landing_partition`. A row whose
month cannot be read lands in the partition `unparseable`, which every month reads and rejects.
Customers' personal columns (name, e-mail, phone) land apart, in `customers_personal`, so that
`tiering forget` can erase them without touching the log the results come from.

A run for month M compares the source with the catalog, partition by partition, up to M:
  - a partition the catalog lacks is landed (version 1), unless the table was landed through its
    month already (`landed_through`): then its rows are late, a restatement as below;
  - a partition whose fingerprint (row count and sum of row hashes, personal columns left out)
    differs from the catalog's current version is a restatement: a plain run fails with one line
    per table and writes nothing; with --restate it lands the next version, and the old one stays;
  - the partition `unparseable` is landed again whenever it differs: its rows count in no result.
A source file byte for byte the one compared last (SHA-256) is not read at all when it was compared
through a month at or after M, else only its rows of the later months are hashed and compared (a
Parquet file's row groups wholly before them are skipped by their statistics).
A backfill lands all its months in its first run (RunSpec.land_through: the partitions up to its
last month are compared and landed, those after the run's month marked `ahead`), so its later runs
find the very file compared through their month and read nothing; each run still reads only the
partitions up to its own month, and a partition landed ahead counts as landed by the run of its
month (the manifest's `landed`, which gate (a) checks).
Then, unless the run restates, the partition versions it would read (the current ones, and the next
version of those it lands) must be those the month's last successful run read (a later --restate
may have replaced one): checked before anything is written, so a run failing it writes nothing.
The run's manifest names every partition version it read, with its fingerprint: the input
checksum and `tiering explain` use it. The catalog and the manifests name each version's file
relative to the landing root (landed_path), so a warehouse folder copied or moved elsewhere reads
its own files; a name written absolute, before, is read as it is.
Files are written under `_tmp/<run_id>/` and moved into the log when every table is compared; the
catalog is written last, so a killed run leaves nothing the next run would read.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from tiering.errors import TieringError
from tiering.files import atomic_write, sha256_file
from tiering.personal import blank_forgotten
from tiering.runspec import RunSpec
from tiering.settings import landing_root
from tiering.source import (
    LOAD_ORDER,
    LOG_TYPES,
    TABLES,
    UNPARSEABLE,
    SourceError,
    TableSpec,
    check_source_dir,
    partition_of,
    run_sql,
    source_rows,
    sql_literal,
)
from tiering.warehouse import apply_settings

log = logging.getLogger(__name__)

CATALOG = "_catalog.json"
PERSONAL_SUFFIX = "_personal"
# zstd at its fastest level: as small as the default level here, and faster to write
PARQUET = "format parquet, compression zstd, compression_level 1"


class LandingError(TieringError):
    pass


class SourceChangedError(TieringError):
    """The source's history up to the month differs from what the change log holds."""


def partition_key(spec: TableSpec) -> str:
    """The Hive key of a table's partitions: updated_month, or rate_month for fx_rates."""
    return "rate_month" if spec.partition_column == "month" else "updated_month"


def read_catalog(root: Path) -> dict:
    path = root / CATALOG
    return json.loads(path.read_text()) if path.exists() else {"tables": {}}


def current_versions(catalog: dict, table: str) -> dict[str, dict]:
    """{partition: its latest version's entry} of one table."""
    partitions = catalog["tables"].get(table, {}).get("partitions", {})
    return {p: versions[-1] for p, versions in partitions.items()}


def read_manifest(spec: RunSpec) -> dict:
    """The run's own manifest, its files absolute (load_manifest)."""
    path = spec.landing_manifest
    if not path.exists():
        raise LandingError(f"no landing manifest for run {spec.run_id} at {path}; run its extract_and_land step first")
    return load_manifest(path)


def landed_path(root: Path, file: str) -> Path:
    """A version's file as the catalog and the manifests name it (relative to the landing root) as a
    path. A name written absolute (by the landing before) stays as it is: pathlib joins an absolute
    path to the root as that path."""
    return Path(root) / file


def with_absolute_files(manifest: dict, root: Path) -> dict:
    """A copy of a run manifest whose partition versions name their files by absolute path, under
    `root`: what the warehouse's landing views (landing_file), the other targets and the personal
    data read."""
    resolved = copy.deepcopy(manifest)
    for table in resolved["tables"].values():
        for version in table["partitions"].values():
            version["file"] = str(landed_path(root, version["file"]))
    return resolved


def load_manifest(path: str | Path) -> dict:
    """A run manifest (<landing root>/_runs/<run_id>.json), its files resolved against the landing
    root it lies in (with_absolute_files). OSError or ValueError when it cannot be read."""
    path = Path(path)
    return with_absolute_files(json.loads(path.read_text()), path.parent.parent)


def manifest_path(warehouse: str | Path, landing_dir: str | None) -> Path | None:
    """Where a run's manifest is (audit.runs.landing_dir, recorded by the run when it started): in
    the warehouse's landing root, so that a warehouse folder copied or moved elsewhere reads its own
    manifests. A run of the previous core (tiering migrate) read a landing folder: as recorded."""
    if not landing_dir:
        return None
    recorded = Path(landing_dir)
    if recorded.suffix == ".json" and recorded.parent.name == "_runs":
        return landing_root(Path(warehouse)) / "_runs" / recorded.name
    return recorded


def _content(spec: TableSpec) -> str:
    """SQL: a 64-bit hash of a row's landed values (not its line: a re-export in another order is
    the same partition). A missing value hashes as an empty one, as the row rules read both: so an
    optional column absent from the file (NULL) and present but empty ('' in a CSV) are the same
    history. MD5 (its lower 64 bits), not DuckDB's hash(), which is several times cheaper but
    changes between DuckDB releases (duckdb/duckdb#17596): the catalog keeps these sums for ever."""
    values = ", ".join(f"coalesce({c}, '')" for c in spec.landed_columns)
    return f"md5_number_lower(concat_ws(chr(31), {values}))"


def _in_reach(partition: str, month: str) -> bool:
    """Whether a run of `month` reads the partition: the months up to it, and `unparseable`."""
    return partition == UNPARSEABLE or partition <= month


def extract_and_land(spec: RunSpec) -> dict:
    """Bring the change log up to the run's month and write the run's manifest (returned with its
    files absolute, as load_manifest reads it)."""
    check_source_dir(spec.source_dir)
    root = landing_root(spec.warehouse)
    tmp = root / "_tmp" / spec.run_id
    # what earlier attempts left: a retried task's, a killed run's (one run lands at a time: the
    # warehouse's lock, the DAG's max_active_runs=1)
    shutil.rmtree(root / "_tmp", ignore_errors=True)
    tmp.mkdir(parents=True)
    catalog = read_catalog(root)
    con = apply_settings(duckdb.connect())
    try:
        plans = {name: _compare(con, spec, name, catalog, root, tmp) for name in LOAD_ORDER}
        changed = [plan["change"] for plan in plans.values() if plan.get("change")]
        if changed and not spec.restate:
            raise SourceChangedError(f"the source's history up to {spec.land_through_text} differs from the change log "
                                     f"({'; '.join(changed)}); rerun with --restate to land it as a new version")
        # the catalog as it is once the written partitions are in the log (in memory until they are),
        # so the partition versions the run reads: checked before any file is moved in
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for name, plan in plans.items():
            _record(catalog, name, plan, spec, now)
        manifest = {
            "run_id": spec.run_id, "month": spec.month_text, "source_dir": str(Path(spec.source_dir).resolve()),
            "as_of_cutoff": spec.as_of_cutoff, "restatement": spec.restate, "landed_at": now,
            "tables": {name: _run_entry(catalog, name, plan, spec.month_text) for name, plan in plans.items()},
        }
        if not spec.restate:
            check_reproduces(spec, manifest)
        blank_forgotten(con, tmp, root)     # customers erased by `tiering forget`: their personal data stays out
        for name, plan in plans.items():
            _move_in(root, tmp, catalog, name, plan)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write(root / CATALOG, json.dumps(catalog, indent=1, sort_keys=True))
    atomic_write(spec.landing_manifest, json.dumps(manifest, indent=1, sort_keys=True))
    return with_absolute_files(manifest, root)


def _compare(con: duckdb.DuckDBPyConnection, spec: RunSpec, name: str, catalog: dict, root: Path,
             tmp: Path) -> dict:
    """Compare one table's source with the catalog up to the month the run lands through (its own,
    or a backfill's last: RunSpec.land_through) and write the partitions to land into `tmp`.
    Returns the plan: the source file, whether it was read, the partitions written (with their
    fingerprints), and the one-line change (a restatement) if any."""
    table, through = TABLES[name], spec.land_through_text
    path = table.path_in(spec.source_dir)
    entry = catalog["tables"].get(name, {})
    held = {p: v for p, v in current_versions(catalog, name).items() if _in_reach(p, through)}
    plan = {"source_file": path.name if path else None, "source_sha256": _sha256(path) if path else None,
            "written": {}, "compared": False}
    same_file = path is not None and plan["source_sha256"] == entry.get("source_sha256")
    if same_file and entry.get("compared_through", "") >= through:
        return plan           # the very file compared before, through these months: nothing changed
    plan["compared"] = True
    # the very file compared through an earlier month: its partitions up to then are the held ones,
    # only the later months are read (and hashed)
    since = entry.get("compared_through") if same_file else None
    read = tmp / "_read" / name
    read.parent.mkdir(exist_ok=True)
    if path is not None:
        reach = (f"landing_partition > '{since}' and landing_partition <= '{through}'" if since else
                 f"landing_partition <= '{through}' or landing_partition = '{UNPARSEABLE}'")
        with source_rows(con, table, path) as rows:
            # every row in reach, with its partition and hash, in one pass: the fingerprints are summed
            # from these files, and the partitions to land are taken from them
            run_sql(con, path, f"""copy (select *, {_content(table)} as _hash
                                         from (select *, {partition_of(table)} as landing_partition from ({rows})
                                               where {_after(table, since)})
                                         where {reach})
                                   to {sql_literal(str(read))}
                                   ({PARQUET}, partition_by (landing_partition), write_partition_columns true)""")
    found = {p: {"rows": n, "hash": str(h)} for p, n, h in con.execute(
        f"select landing_partition, count(*), sum(_hash) from {_read_rows(read)} group by 1").fetchall()}
    if since:
        found.update({p: _fingerprint(v) for p, v in held.items() if p <= since or p == UNPARSEABLE})
    differ = [p for p in held if _fingerprint(held[p]) != found.get(p, {"rows": 0, "hash": "0"})]
    # a new partition of a month the source was landed through had no row then: its rows are late
    late = [p for p in found if p not in held and p != UNPARSEABLE and p <= entry.get("landed_through", "")]
    restated = [p for p in differ if p != UNPARSEABLE] + late
    if restated:
        plan["change"] = f"{name}: {_describe(con, table, root, held, read, restated)}"
    to_write = [p for p in found if p not in held and p not in late] + \
        [p for p in differ + late if p == UNPARSEABLE or spec.restate]
    if to_write:
        _write_partitions(con, table, read, tmp, to_write)
        plan["written"] = {p: found.get(p, {"rows": 0, "hash": "0"}) for p in to_write}
    return plan


def _after(table: TableSpec, since: str | None) -> str:
    """SQL: a cheap condition every source row of a month after `since` meets, on the text of its
    updated_at: at or after the last day of `since` (a day before its end: any UTC offset), or
    below '1' (a text DuckDB still reads with a leading space or zero). DuckDB checks it against a
    Parquet file's row-group statistics and skips the groups wholly outside it, instead of reading
    and placing every row (bench/RESULTS.md). fx_rates, placed by `month`, are few: no condition."""
    if since is None or table.partition_column != "updated_at":
        return "true"
    year, month = map(int, since.split("-"))
    last_day = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    column = table.partition_column
    return f"({column} >= '{last_day.isoformat()}' or {column} < '1')"


def _read_rows(read: Path) -> str:
    """SQL: the rows a table's source gave in reach (written by _compare), none when it gave none."""
    if not any(read.glob("*/*.parquet")):
        return "(select null::varchar as landing_partition, null::ubigint as _hash where false)"
    return f"read_parquet({sql_literal(str(read / '*' / '*.parquet'))}, hive_partitioning = false)"


def _sha256(path: Path) -> str:
    """The source file's SHA-256; a file that cannot be read (a folder, no permission) is a SourceError."""
    try:
        return sha256_file(path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc}); fix or replace the file") from exc


def _fingerprint(version: dict) -> dict:
    return {"rows": version["rows"], "hash": version["hash"]}


def _describe(con: duckdb.DuckDBPyConnection, table: TableSpec, root: Path, held: dict, read: Path,
              partitions: list) -> str:
    """The partitions whose rows changed, with the rows gone, new and changed against the landed
    version. A row is matched by the version it is of: the table's key and updated_at (fx_rates,
    unversioned: its key, currency and month); it changed when its content (_hash) differs. (Rows
    of one version landed twice are matched one to one, the identical ones first.)"""
    columns = [*table.key, "updated_at"] if table.versioned else list(table.key)
    version = " || chr(31) || ".join(f"coalesce({c}, '')" for c in columns)
    # (a late month has no landed version)
    files = ", ".join(sql_literal(str(landed_path(root, held[p]["file"]))) for p in partitions if p in held)
    listed = ", ".join(map(sql_literal, partitions))
    none = "select null::varchar as row_version, null::ubigint as _hash where false"
    landed = (f"select {version} as row_version, _hash from read_parquet([{files}], hive_partitioning = false)"
              if files else none)
    in_source = (f"select {version} as row_version, _hash from {_read_rows(read)} "
                 f"where landing_partition in ({listed})" if any(read.glob("*/*.parquet")) else none)
    # (fetchall: a result left unfinished makes the next table's con.register of a CSV fail on DuckDB 2)
    gone, new, changed = con.execute(f"""
        with landed as ({landed}),
             in_source as ({in_source}),
             landed_unmatched as (select row_version, count(*) as landed_rows
                                  from (select * from landed except all select * from in_source) group by 1),
             source_unmatched as (select row_version, count(*) as source_rows
                                  from (select * from in_source except all select * from landed) group by 1),
             per_version as (select coalesce(landed_rows, 0) as landed_rows, coalesce(source_rows, 0) as source_rows
                             from landed_unmatched full join source_unmatched using (row_version))
        select coalesce(sum(landed_rows - least(landed_rows, source_rows)), 0),
               coalesce(sum(source_rows - least(landed_rows, source_rows)), 0),
               coalesce(sum(least(landed_rows, source_rows)), 0)
        from per_version""").fetchall()[0]
    shown = ", ".join(sorted(partitions)[:6]) + (", ..." if len(partitions) > 6 else "")
    return (f"{len(partitions)} month(s) changed ({shown}): {gone} row(s) gone, {new} row(s) new, "
            f"{changed} row(s) changed")


def _parts(table: TableSpec) -> dict[str, list[str]]:
    """The change logs a table lands into, with their columns: its own, and its personal columns apart."""
    parts = {table.name: list(table.log_columns)}
    if table.personal:
        parts[table.name + PERSONAL_SUFFIX] = [*table.key, "updated_at", *table.personal, "_source_line",
                                               "landing_partition"]
    return parts


def _write_partitions(con: duckdb.DuckDBPyConnection, table: TableSpec, read: Path, tmp: Path,
                      partitions: list[str]) -> None:
    """Each partition to land as tmp/<log>/<partition>.parquet, from the rows read (moved as they
    are when a single file holds exactly its columns; an empty file for a partition gone from the
    source: its next version holds no row)."""
    for folder, columns in _parts(table).items():
        (tmp / folder).mkdir(parents=True, exist_ok=True)
        for partition in partitions:
            files = sorted((read / f"landing_partition={partition}").glob("*.parquet"))
            target = tmp / folder / f"{partition}.parquet"
            if len(files) == 1 and not table.personal:
                files[0].rename(target)
                continue
            rows = (f"select {', '.join(columns)} from read_parquet([{', '.join(sql_literal(str(f)) for f in files)}],"
                    f" hive_partitioning = false) order by _source_line" if files else
                    "select " + ", ".join(f"null::{LOG_TYPES.get(c, 'varchar')} as {c}" for c in columns)
                    + " where false")
            con.execute(f"copy ({rows}) to {sql_literal(str(target))} ({PARQUET})")



def _version_file(table: TableSpec, folder: str, partition: str, number: int) -> str:
    """Where version `number` of a partition lies in the log `folder` (a table's, or its personal
    columns'), relative to the landing root."""
    return f"{folder}/{partition_key(table)}={partition}/v{number}.parquet"


def _record(catalog: dict, name: str, plan: dict, spec: RunSpec, now: str) -> None:
    """Record in the catalog (in memory) what the run compared of a table, and its written
    partitions as their next version (whose files _move_in moves into the log)."""
    table = TABLES[name]
    entry = catalog["tables"].setdefault(name, {"partitions": {}})
    if plan["compared"]:
        same_file = plan["source_sha256"] == entry.get("source_sha256")
        through = spec.land_through_text
        entry.update(source_file=plan["source_file"], source_sha256=plan["source_sha256"],
                     compared_through=max(entry.get("compared_through", ""), through) if same_file else through)
        if plan["source_file"]:   # the months any source file of the table was landed through
            entry["landed_through"] = max(entry.get("landed_through", ""), through)
    for partition, found in plan["written"].items():
        versions = entry["partitions"].setdefault(partition, [])
        number = len(versions) + 1
        versions.append({"version": number, "rows": found["rows"], "hash": found["hash"], "landed_by": spec.run_id,
                         "landed_at": now, "file": _version_file(table, name, partition, number)})
        if partition != UNPARSEABLE and partition > spec.month_text:
            versions[-1]["ahead"] = True     # landed before the month it holds is run (a backfill)


def _move_in(root: Path, tmp: Path, catalog: dict, name: str, plan: dict) -> None:
    """Move a table's written partitions into the log, as the versions _record gave them (read-only)."""
    table = TABLES[name]
    for partition in plan["written"]:
        number = catalog["tables"][name]["partitions"][partition][-1]["version"]
        for folder in _parts(table):
            target = root / _version_file(table, folder, partition, number)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(tmp / folder / f"{partition}.parquet", target)
            target.chmod(0o444)


def _run_entry(catalog: dict, name: str, plan: dict, month: str) -> dict:
    """A table in the run's manifest: its source file, the partition versions the run reads, and
    those it counts as landed: written by it, or its month's partition landed ahead by a backfill's
    first run (not the partitions it wrote ahead: they count for the runs of their months)."""
    entry = catalog["tables"].get(name, {})
    current = current_versions(catalog, name)
    read = {p: {k: v[k] for k in ("version", "rows", "hash", "file", "landed_by")}
            for p, v in sorted(current.items()) if _in_reach(p, month)}
    landed = {p for p in plan["written"] if p in read}
    if month in read and current[month].get("ahead"):
        landed.add(month)
    return {"source_file": plan["source_file"] or entry.get("source_file"),
            "source_sha256": plan["source_sha256"], "source_read": plan["compared"],
            "landed": sorted(landed), "partitions": read,
            "rows": sum(v["rows"] for v in read.values())}


def check_reproduces(spec: RunSpec, manifest: dict) -> None:
    """A plain rerun must read the partition versions the month's last successful run read: a
    restatement since (a later --restate of a month it reads) makes it fail."""
    previous = last_successful_run(spec)
    if previous is None:
        return
    run_id, path = previous
    if not path.name.endswith(".json"):
        # a run of the previous core (tiering migrate): its landing_dir is the folder landing/<run_id>/
        # it read, not a change-log manifest; there are no partition versions to compare with
        log.info(f"{spec.month_text} was last computed by run {run_id} of the previous core ({path}): the change "
                 f"log is not compared with it")
        return
    try:
        before = json.loads(Path(path).read_text())["tables"]
    except (OSError, ValueError, KeyError):
        log.warning(f"reproducibility not checked: the manifest of run {run_id} ({path}) is not readable")
        return
    lines = []
    for name, table in manifest["tables"].items():
        was = {p: v["version"] for p, v in before.get(name, {}).get("partitions", {}).items() if p != UNPARSEABLE}
        now = {p: v["version"] for p, v in table["partitions"].items() if p != UNPARSEABLE}
        moved = sorted(p for p in was.keys() | now.keys() if was.get(p) != now.get(p))
        if moved:
            lines.append(f"{name} {', '.join(f'{p} v{was.get(p, 0)} -> v{now.get(p, 0)}' for p in moved[:6])}")
    if lines:
        raise SourceChangedError(f"{spec.month_text} was computed by run {run_id} from other versions of the "
                                 f"change log ({'; '.join(lines)}); rerun with --restate to recompute it from the "
                                 f"current ones")


def last_successful_run(spec: RunSpec) -> tuple[str, Path] | None:
    """(run id, landing manifest) of the month's latest successful run other than this one."""
    if not Path(spec.warehouse).exists():
        return None
    from tiering.warehouse import connect

    con = connect(spec.warehouse, read_only=True)
    try:
        row = con.execute("""select run_id, landing_dir from audit.runs
                             where month = ? and status = 'success' and run_id <> ?
                             order by finished_at desc nulls last, run_id desc limit 1""",
                          [spec.month, spec.run_id]).fetchone()
        return (row[0], manifest_path(spec.warehouse, row[1])) if row else None
    finally:
        con.close()
