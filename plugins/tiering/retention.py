"""Retention of what piles up beside the warehouse: superseded landed partition versions, Great
Expectations Data Docs and logs. `tiering cleanup` applies it; so does `finish_run` after each
successful run when a retention is set. Each kind is kept for ever unless its variable is set:

    TIERING_RETAIN_LANDED_DAYS=N    landed partition versions superseded more than N days ago
    TIERING_RETAIN_GX_DOCS_DAYS=N   GX Data Docs (and the validation results stored with them) of
                                    runs whose files are all older than N days
    TIERING_RETAIN_LOGS_DAYS=N      log files older than N days

(`tiering cleanup --landed-days N --gx-docs-days N --logs-days N` sets them for one command.)

Landed files. A partition version of the change log (tiering.landing) is deleted, with the
personal file beside it (tiering.personal), only when
  - it is not its partition's current version (a run would read that one), and
  - the version after it was landed more than N days ago, and
  - neither the last successful run of any month nor a run still running reads it (their
    manifests, <landing root>/_runs/<run_id>.json, name every version they read): what a month's
    results, its rerun check (landing.check_reproduces), `tiering explain` and the contact data
    of its exports read stays. An older successful run of a restated month may lose the
    version it read; its manifest keeps the version's number and fingerprint.
The catalog keeps a deleted version's entry (number, fingerprint, who landed it) with
`deleted_at`: version numbers never repeat. Leftovers of killed landings (_tmp/<run_id>/) older
than N days go too. When a manifest that must be kept is unreadable, nothing is deleted from the
landing (which versions it reads cannot be told).

GX Data Docs: <warehouse dir>/gx_docs/<run_id>/, one folder per run, by age only (the gate results
stay in the warehouse, audit.dq_results; `tiering dq-report` reads them).

Logs: <warehouse dir>/logs/ (the CLI's log per command), dbt's log folder ($DBT_LOG_PATH, default
dbt_project/logs) and Airflow's task logs ($AIRFLOW__LOGGING__BASE_LOG_FOLDER, default
$AIRFLOW_HOME/logs); the last two are the project's, shared by its warehouses. Files by age
(modification time); folders left empty are removed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tiering.errors import TieringError
from tiering.settings import DBT_PROJECT_DIR, PROJECT_ROOT, landing_root

log = logging.getLogger(__name__)

ENV = {"landed": "TIERING_RETAIN_LANDED_DAYS", "gx_docs": "TIERING_RETAIN_GX_DOCS_DAYS",
       "logs": "TIERING_RETAIN_LOGS_DAYS"}
DAY_SECONDS = 86400


@dataclass(frozen=True)
class Retention:
    """Days to keep each kind (None: for ever)."""

    landed: float | None = None
    gx_docs: float | None = None
    logs: float | None = None

    @classmethod
    def from_env(cls, **overrides: float | None) -> Retention:
        """The retention the environment sets, with `overrides` (not None) taking precedence."""
        days = {kind: _days(os.environ.get(env), env) for kind, env in ENV.items()}
        days.update({k: v for k, v in overrides.items() if v is not None})
        for kind, value in days.items():
            if value is not None and value < 0:
                raise TieringError(f"retention of {kind} is {value} days: give 0 or more days")
        return cls(**days)

    def any(self) -> bool:
        return any(v is not None for v in (self.landed, self.gx_docs, self.logs))


def _days(text: str | None, env: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise TieringError(f"{env}={text!r} is not a number of days; set it to e.g. 90, or unset it to keep "
                           f"everything") from None


@dataclass
class Outcome:
    """What one kind's clean-up deleted (or would delete: dry run), or why it did not run."""

    deleted: list[str] = field(default_factory=list)
    bytes: int = 0
    kept: int = 0            # landed: superseded versions kept because a run still reads them
    skipped: str | None = None


# --------------------------------------------------------------------------- where things are

def gx_docs_root(warehouse: Path) -> Path:
    """As tiering.quality.docs_dir puts them: <warehouse dir>/gx_docs/<run_id>/."""
    return Path(warehouse).resolve().parent / "gx_docs"


def log_dirs(warehouse: Path) -> list[Path]:
    """The folders holding logs: the CLI's beside the warehouse, dbt's and Airflow's."""
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow")
    airflow_logs = os.environ.get("AIRFLOW__LOGGING__BASE_LOG_FOLDER") or airflow_home / "logs"
    folders = [Path(warehouse).resolve().parent / "logs", DBT_PROJECT_DIR / os.environ.get("DBT_LOG_PATH", "logs"),
               Path(airflow_logs)]
    unique = []
    for folder in folders:
        if folder.resolve() not in [f.resolve() for f in unique]:
            unique.append(folder)
    return unique


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _newest_mtime(path: Path) -> float:
    times = [path.stat().st_mtime] + [f.stat().st_mtime for f in path.rglob("*")]
    return max(times)


# --------------------------------------------------------------------------- the runs that count

def _runs_to_keep(warehouse: Path) -> tuple[dict[str, str], set[str]]:
    """({run_id: manifest path} of each month's last successful run and of the runs still running,
    {run_id} of the running ones); empty when the warehouse has no runs."""
    from tiering.warehouse import connect

    if not Path(warehouse).exists():
        raise TieringError(f"warehouse {warehouse} not found: which landed versions its runs read cannot be told")
    con = connect(warehouse, read_only=True)
    try:
        exists = con.execute("select count(*) from information_schema.tables where table_schema = 'audit' "
                             "and table_name = 'runs' and table_catalog = current_database()").fetchall()[0][0]
        rows = con.execute("""
            with last_successes as (
                select run_id, landing_dir, status from audit.runs where status = 'success'
                qualify row_number() over (partition by month order by finished_at desc nulls last, run_id desc) = 1
            )
            select run_id, landing_dir, status from last_successes
            union all
            select run_id, landing_dir, status from audit.runs where status = 'running'""").fetchall() \
            if exists else []
    finally:
        con.close()
    return {r[0]: r[1] for r in rows}, {r[0] for r in rows if r[2] == "running"}


# --------------------------------------------------------------------------- each kind

def _clean_landed(warehouse: Path, days: float, now: datetime, dry_run: bool) -> Outcome:
    from tiering.files import atomic_write
    from tiering.landing import landed_path, load_manifest, manifest_path, read_catalog
    from tiering.personal import PERSONAL_TABLE, personal_file

    outcome = Outcome()
    root = landing_root(warehouse)
    if not (root / "_catalog.json").exists():
        return outcome
    try:
        keep_runs, running = _runs_to_keep(warehouse)
    except TieringError as exc:
        outcome.skipped = str(exc)
        return outcome
    read: set[str] = set()
    for run_id, recorded in keep_runs.items():
        if recorded and not str(recorded).endswith(".json"):
            continue   # a run of the core before the change log (tiering.migrate): it read no version of it
        path = manifest_path(warehouse, recorded)
        try:
            manifest = load_manifest(path)
            read |= {v["file"] for t in manifest["tables"].values() for v in t["partitions"].values()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            outcome.skipped = (f"the landing manifest of run {run_id} ({path}) is not readable ({exc}): which "
                               f"versions it reads cannot be told, so none is deleted")
            return outcome
    cutoff = now - timedelta(days=days)
    catalog = read_catalog(root)
    stamp, changed = now.isoformat(timespec="seconds"), False
    for table, entry in catalog["tables"].items():
        for versions in entry.get("partitions", {}).values():
            for version, successor in zip(versions, versions[1:], strict=False):
                if version.get("deleted_at") or datetime.fromisoformat(successor["landed_at"]) > cutoff:
                    continue
                file = landed_path(root, version["file"])
                if str(file) in read:
                    outcome.kept += 1
                    continue
                files = [file] + ([personal_file(file)] if table == PERSONAL_TABLE else [])
                for path in files:
                    if path.exists():
                        outcome.bytes += _size(path)
                        outcome.deleted.append(str(path))
                        if not dry_run:
                            path.unlink()
                version["deleted_at"], changed = stamp, True
    leftovers = [d for d in sorted((root / "_tmp").glob("*")) if d.is_dir() and d.name not in running
                 and _newest_mtime(d) < cutoff.timestamp()]
    for folder in leftovers:
        outcome.bytes += _size(folder)
        outcome.deleted.append(str(folder))
        if not dry_run:
            shutil.rmtree(folder)
    if changed and not dry_run:
        atomic_write(root / "_catalog.json", json.dumps(catalog, indent=1, sort_keys=True))
    return outcome


def _clean_gx_docs(warehouse: Path, days: float, now: datetime, dry_run: bool) -> Outcome:
    outcome = Outcome()
    root = gx_docs_root(warehouse)
    if not root.is_dir():
        return outcome
    try:
        running = _runs_to_keep(warehouse)[1]
    except TieringError:
        running = set()
    cutoff = now.timestamp() - days * DAY_SECONDS
    for folder in sorted(root.iterdir()):
        if folder.name in running or _newest_mtime(folder) >= cutoff:
            continue
        outcome.bytes += _size(folder)
        outcome.deleted.append(str(folder))
        if dry_run:
            continue
        if folder.is_dir():
            shutil.rmtree(folder)
        else:
            folder.unlink()
    return outcome


def _clean_logs(warehouse: Path, days: float, now: datetime, dry_run: bool) -> Outcome:
    outcome = Outcome()
    cutoff = now.timestamp() - days * DAY_SECONDS
    for folder in log_dirs(warehouse):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                outcome.bytes += path.stat().st_size
                outcome.deleted.append(str(path))
                if not dry_run:
                    path.unlink()
        if not dry_run:   # folders left empty, deepest first (not the log folder itself)
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                              reverse=True):
                if not any(sub.iterdir()):
                    sub.rmdir()
    return outcome


CLEANERS = {"landed": _clean_landed, "gx_docs": _clean_gx_docs, "logs": _clean_logs}


def cleanup(warehouse: Path, retention: Retention, now: datetime | None = None,
            dry_run: bool = False) -> dict[str, Outcome]:
    """Apply the retention (the kinds it sets) to the files of one warehouse. The caller holds the
    warehouse (the CLI its lock; finish_run is the run)."""
    now = now or datetime.now(UTC)
    return {kind: CLEANERS[kind](Path(warehouse), days, now, dry_run)
            for kind in CLEANERS if (days := getattr(retention, kind)) is not None}


def format_cleanup(outcomes: dict[str, Outcome], retention: Retention, dry_run: bool = False) -> str:
    verb = "would delete" if dry_run else "deleted"
    parts = []
    for kind, label in (("landed", "landed"), ("gx_docs", "GX docs"), ("logs", "logs")):
        days = getattr(retention, kind)
        if days is None:
            parts.append(f"{label}: kept (no retention set, {ENV[kind]})")
            continue
        outcome = outcomes[kind]
        if outcome.skipped:
            parts.append(f"{label}: nothing deleted ({outcome.skipped})")
            continue
        text = f"{label} older than {days:g} d: {verb} {len(outcome.deleted)} (of {outcome.bytes / 1e6:.1f} MB)"
        if kind == "landed" and outcome.kept:
            text += f", {outcome.kept} superseded version(s) kept (a month's last successful run reads them)"
        parts.append(text)
    return "cleanup: " + "; ".join(parts)


def cleanup_after_run(warehouse: Path) -> str | None:
    """finish_run's clean-up: the retention the environment sets, if any; never fails the run."""
    try:
        retention = Retention.from_env()
        if not retention.any():
            return None
        started = time.monotonic()
        text = format_cleanup(cleanup(warehouse, retention), retention)
    except Exception as exc:  # a clean-up problem must not fail a run that succeeded
        log.warning(f"retention clean-up not done: {exc}")
        return None
    log.info(f"{text} ({time.monotonic() - started:.1f} s)")
    return text


def cli_cleanup(args) -> None:
    """`tiering cleanup [--landed-days N] [--gx-docs-days N] [--logs-days N] [--dry-run] [--warehouse FILE]`."""
    from tiering.locks import warehouse_lock

    retention = Retention.from_env(landed=args.landed_days, gx_docs=args.gx_docs_days, logs=args.logs_days)
    if not retention.any():
        print(format_cleanup({}, retention) + "; set a retention (see docs/privacy.md) to delete anything")
        return
    with warehouse_lock(args.warehouse, "tiering cleanup", wait=False):
        outcomes = cleanup(args.warehouse, retention, dry_run=args.dry_run)
    print(format_cleanup(outcomes, retention, args.dry_run))
    if args.dry_run:
        for outcome in outcomes.values():
            for path in outcome.deleted:
                print(f"  {path}")
