"""Operating over months: what each month's runs did (`tiering status`) and which months a
backfill can skip.

A month is skipped by `tiering backfill` when its last successful run used the same rules
(`rule_version`) and the same source files (`source_fingerprint`: the SHA-256 of every source
file present, by table, as the run's landing manifest names them (`tables[t].source_file`,
`source_sha256`); recorded by finish_run, so a run hashes nothing twice). The backfill hashes the
source once per command to compare. So after a failure the same command resumes at the failed
month; `--force` reruns every month.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path


def fingerprint_of(files: dict[str, tuple[str, str]]) -> str:
    """{table: (file name, SHA-256)} -> one hex digest."""
    return hashlib.sha256(json.dumps({k: list(v) for k, v in sorted(files.items())}).encode()).hexdigest()


def manifest_fingerprint(manifest: dict) -> str:
    """The source fingerprint of a run (its landing manifest: each table's source file and SHA-256). A
    table without a source file (optional, absent) has no SHA-256 there and is left out, as
    `source_fingerprint` leaves it out."""
    return fingerprint_of({name: (t["source_file"], t["source_sha256"]) for name, t in manifest["tables"].items()
                           if t.get("source_sha256")})


def source_fingerprint(source_dir: Path) -> str:
    """The source fingerprint of a source directory now (hashes every file: ~1 s per GB)."""
    from tiering.files import sha256_file
    from tiering.source import TABLES

    files = {}
    for name, spec in TABLES.items():
        path = spec.path_in(source_dir)
        if path is not None:
            files[name] = (path.name, sha256_file(path))
    return fingerprint_of(files)


def last_success(warehouse: Path, month: date) -> dict | None:
    """The month's last successful run (run_id, rule_version, source_fingerprint), or None."""
    from tiering.warehouse import connect, ensure_schema

    if not Path(warehouse).exists():
        return None
    con = connect(warehouse)
    try:
        ensure_schema(con)
        row = con.execute("""select run_id, rule_version, source_fingerprint from audit.runs
                             where month = ? and status = 'success'
                             order by finished_at desc nulls last limit 1""", [month]).fetchone()
    finally:
        con.close()
    return dict(zip(("run_id", "rule_version", "source_fingerprint"), row, strict=True)) if row else None


def unchanged_since(warehouse: Path, month: date, rule_version: str, fingerprint) -> str | None:
    """The run id of the month's last successful run if it used these rules and this source
    (`fingerprint`: the value, or a callable computing it, called only when needed); else None."""
    last = last_success(warehouse, month)
    if last is None or last["rule_version"] != rule_version or not last["source_fingerprint"]:
        return None
    current = fingerprint() if callable(fingerprint) else fingerprint
    return last["run_id"] if last["source_fingerprint"] == current else None


# -- tiering status

OPEN_STATES = ("running", "abandoned")


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m")
    return str(value)


def warehouse_status(warehouse: Path) -> dict:
    """Per month: the last run and its state, the last successful run with its rule version and
    input checksum, and what the published copy holds of it; and the runs still running or
    abandoned."""
    from tiering.errors import TieringError
    from tiering.publish import published_path
    from tiering.warehouse import connect

    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise TieringError(f"warehouse {warehouse} not found; run a month first (tiering run or tiering backfill)")
    con = connect(warehouse, read_only=True)
    try:
        cursor = con.execute("select * from audit.runs order by month, started_at nulls first, run_id")
        names = [d[0] for d in cursor.description]
        runs = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except Exception as exc:
        raise TieringError(f"{warehouse} has no audit.runs ({str(exc).splitlines()[0]}); run a month first") from None
    finally:
        con.close()

    published_file = published_path(warehouse)
    published: dict[date, list[str]] = {}
    if published_file.exists():
        pcon = connect(published_file, read_only=True)
        try:
            published = {m: sorted(ids) for m, ids in pcon.execute(
                "select month, list(distinct run_id) from marts.customer_tier_monthly group by month").fetchall()}
        except Exception:
            published = {}
        finally:
            pcon.close()

    months: dict[date, dict] = {}
    for run in runs:
        entry = months.setdefault(run["month"], {"month": _text(run["month"]), "runs": 0})
        entry["runs"] += 1
        entry.update(last_run_id=run["run_id"], last_status=run["status"], last_started_at=_text(run["started_at"]),
                     last_finished_at=_text(run["finished_at"]),
                     last_message=(run.get("message") or None) and run["message"].splitlines()[0][:300])
        if run["status"] == "success":
            entry.update(success_run_id=run["run_id"], success_finished_at=_text(run["finished_at"]),
                         rule_version=run["rule_version"], input_checksum=run["input_checksum"],
                         source_fingerprint=run.get("source_fingerprint"))
    for month, entry in months.items():
        for key in ("success_run_id", "success_finished_at", "rule_version", "input_checksum", "source_fingerprint"):
            entry.setdefault(key, None)
        entry["published_run_ids"] = published.get(month, [])
        # BI reads this month as its last successful run made it
        entry["published"] = bool(entry["success_run_id"]) and entry["published_run_ids"] == [entry["success_run_id"]]
    latest_published = max(published) if published else None
    open_runs = [{"run_id": r["run_id"], "month": _text(r["month"]), "status": r["status"],
                  "started_at": _text(r["started_at"]),
                  **{k: r[k] for k in ("pid", "host") if k in r and r[k] is not None}}
                 for r in runs if r["status"] in OPEN_STATES]
    return {"warehouse": str(warehouse), "published_copy": str(published_file) if published_file.exists() else None,
            "published_months": [_text(m) for m in sorted(published)],
            "latest_published_month": _text(latest_published),
            "months": [months[m] for m in sorted(months)], "open_runs": open_runs}


def _published_text(entry: dict) -> str:
    ids = entry["published_run_ids"]
    if not ids:
        return "no"
    if entry["published"]:
        return "yes"
    return f"other run: {', '.join(ids)}"


def format_status(status: dict) -> str:
    head = ["month", "last run", "state", "last success", "rules", "input", "published"]
    rows = [[m["month"], m["last_run_id"], m["last_status"] or "?", m["success_run_id"] or "-",
             m["rule_version"] or "-", (m["input_checksum"] or "-")[:12], _published_text(m)]
            for m in status["months"]]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"warehouse {status['warehouse']}"]
    if status["published_copy"]:
        months = status["published_months"]
        span = f"{months[0]}..{months[-1]}" if len(months) > 1 else (months[0] if months else "none")
        lines.append(f"published copy {status['published_copy']}: months {span}")
    else:
        lines.append("published copy: none yet")
    lines.append("")
    for row in [head, *rows]:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        lines.append("(no runs yet)")
    for run in status["open_runs"]:
        where = "".join(f", {k} {run[k]}" for k in ("host", "pid") if k in run)
        lines.append(f"{run['status']}: run {run['run_id']} (month {run['month']}, started {run['started_at']}{where})")
    failed = [m for m in status["months"] if m["last_status"] == "failed" and m.get("last_message")]
    for m in failed:
        lines.append(f"failed: {m['month']} run {m['last_run_id']}: {m['last_message']}")
    return "\n".join(lines)


def cli_status(args) -> None:
    status = warehouse_status(args.warehouse)
    print(json.dumps(status, indent=2, default=str) if args.json else format_status(status))
