"""`tiering`: the command line of the customer-tiering pipeline.

    tiering demo-data --out DIR [--customers N] [--months N] [--seed S]
    tiering run       --source DIR --month YYYY-MM [--restate] [--provisional] [--warehouse FILE] [--rules FILE]
                      [--verbose]
    tiering backfill  --source DIR --start YYYY-MM --end YYYY-MM [--restate] [--warehouse FILE] [--rules FILE]
                      [--force] [--verbose]
    tiering status    [--warehouse FILE] [--json]
    tiering explain   --customer ID --month YYYY-MM [--warehouse FILE] [--json]
    tiering dq-report --month YYYY-MM [--run-id ID] [--warehouse FILE] [--json]
    tiering query     "SQL" [--warehouse FILE] [--live]
    tiering export    --month YYYY-MM --out DIR [--warehouse FILE]
    tiering report    --month YYYY-MM --out FILE.html [--warehouse FILE]
    tiering publish-postgres --month YYYY-MM [--warehouse FILE] [--dsn DSN]
    tiering crm-export --month YYYY-MM --format csv|jsonl --out FILE [--include-contact] [--warehouse FILE]
    tiering backtest-potential --source DIR --calibration-end YYYY-MM --holdout-months N [--rules FILE]
    tiering dbt       [--month YYYY-MM] -- <dbt command and args>
    tiering simulate  --rules NEW.yml --month YYYY-MM [--out FILE.csv] [--warehouse FILE]
    tiering forget    --customer ID [--warehouse FILE] [--dsn DSN]
    tiering cleanup   [--landed-days N] [--gx-docs-days N] [--logs-days N] [--dry-run] [--warehouse FILE]
    tiering migrate   [--warehouse FILE] [--dry-run] [--json]

Exit status 0 on success; otherwise 1 with a one-line reason on stderr. `run` and `backfill` print
a progress bar (or plain lines off a terminal) and write everything else to a log file
(tiering.console); `--verbose` streams it all.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tiering.errors import TieringError
from tiering.settings import DEFAULT_RULES, DEFAULT_WAREHOUSE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiering", description="Monthly customer tiering pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-data", help="write a deterministic demo source directory")
    demo.add_argument("--out", required=True, type=Path)
    demo.add_argument("--customers", type=int, default=500)
    demo.add_argument("--months", type=int, default=15)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--start", default="2024-01", help="first month of the data (YYYY-MM)")
    demo.add_argument("--format", choices=("csv", "parquet"), default="csv")

    def warehouse_and_rules(p: argparse.ArgumentParser) -> None:
        p.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE, help=f"default {DEFAULT_WAREHOUSE}")
        p.add_argument("--rules", type=Path, default=DEFAULT_RULES, help=f"default {DEFAULT_RULES}")

    run = sub.add_parser("run", help="run the Airflow DAG for one month")
    run.add_argument("--source", required=True, type=Path)
    run.add_argument("--month", required=True)
    run.add_argument("--restate", action="store_true",
                     help="accept a changed source history: the months up to this one whose rows differ from the "
                          "change log (gone, changed or late) are landed as new partition versions (the old ones "
                          "are kept) and the month is recomputed from them (audit.restatement_diffs says what "
                          "changed); without it such a run fails and writes nothing")
    run.add_argument("--provisional", action="store_true",
                     help="allow the month under way (UTC): its marts are marked is_provisional and it is not "
                          "published to PostgreSQL")
    warehouse_and_rules(run)
    run.add_argument("--verbose", action="store_true", help="stream dbt, GE and Airflow output (else: log file)")

    backfill = sub.add_parser("backfill", help="run the DAG for every month of a range, oldest first")
    backfill.add_argument("--source", required=True, type=Path)
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    warehouse_and_rules(backfill)
    backfill.add_argument("--force", action="store_true",
                          help="rerun months whose last successful run had the same rules and source")
    backfill.add_argument("--restate", action="store_true",
                          help="run the months as restatements (see run --restate): after a correction of the "
                               "source's history, each month whose source or rules changed is recomputed from "
                               "the new partition versions; unchanged months are still skipped (unless --force)")
    backfill.add_argument("--verbose", action="store_true", help="stream dbt, GE and Airflow output (else: log file)")

    status = sub.add_parser("status", help="per month: last run, last success (rules, input), published")
    status.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    explain = sub.add_parser("explain", help="why a customer has its tier in a month")
    explain.add_argument("--customer", required=True)
    explain.add_argument("--month", required=True)
    explain.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    dq = sub.add_parser("dq-report", help="the data quality gate results of a month's latest run")
    dq.add_argument("--month", required=True)
    dq.add_argument("--run-id", help="a specific run of the month (default: its latest evaluated run)")
    dq.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    dq.add_argument("--json", action="store_true", help="machine-readable output")

    dbt = sub.add_parser("dbt", help="run any dbt command with the pipeline's vars (e.g. docs generate, test)")
    dbt.add_argument("--month", help="month for the vars (default: the latest month run)")
    dbt.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    dbt.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, help="dbt command and arguments, e.g. -- test")

    export = sub.add_parser("export", help="write a month's marts as Parquet files and a read-only DuckDB file")
    export.add_argument("--month", required=True)
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)

    report = sub.add_parser("report", help="write a self-contained HTML report of a month")
    report.add_argument("--month", required=True)
    report.add_argument("--out", required=True, type=Path)
    report.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)

    pg = sub.add_parser("publish-postgres", help="(re)publish a month's marts to PostgreSQL (schemas bi, audit)")
    pg.add_argument("--month", required=True)
    pg.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    pg.add_argument("--dsn", help="PostgreSQL connection (default: $TIERING_BI_DSN)")

    crm = sub.add_parser("crm-export", help="write the month's CRM actions for a CRM bulk import")
    crm.add_argument("--month", required=True)
    crm.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    crm.add_argument("--out", required=True, type=Path)
    crm.add_argument("--include-contact", action="store_true",
                     help="add name, e-mail and phone (needs a role allowed to read personal data)")
    crm.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)

    backtest = sub.add_parser("backtest-potential", help="fit the potential model on a calibration period "
                                                        "and compare with the hold-out months")
    backtest.add_argument("--source", required=True, type=Path)
    backtest.add_argument("--calibration-end", required=True)
    backtest.add_argument("--holdout-months", required=True, type=int)
    backtest.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    backtest.add_argument("--json", action="store_true", help="machine-readable output")

    query = sub.add_parser("query", help="run a read-only SQL query on the published copy BI reads")
    query.add_argument("sql")
    query.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    query.add_argument("--live", action="store_true", help="query the live warehouse instead (blocks runs)")

    simulate = sub.add_parser("simulate", help="a month's tiers under another rules file, in a temporary copy")
    simulate.add_argument("--rules", required=True, type=Path)
    simulate.add_argument("--month", required=True)
    simulate.add_argument("--out", type=Path, help="CSV of the customers that would change tier")
    simulate.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)

    forget = sub.add_parser("forget", help="erase a customer's personal data (name, e-mail, phone) everywhere "
                                           "the project keeps it; tiers and history keep the pseudonymous key")
    forget.add_argument("--customer", required=True, help="the customer's id, as in the source")
    forget.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    forget.add_argument("--dsn", help="PostgreSQL connection (default: $TIERING_BI_DSN; none configured: skipped)")

    cleanup = sub.add_parser("cleanup", help="delete superseded landed versions, GX Data Docs and logs older "
                                             "than their retention (TIERING_RETAIN_*_DAYS; unset: kept)")
    for kind, env in (("landed", "TIERING_RETAIN_LANDED_DAYS"), ("gx-docs", "TIERING_RETAIN_GX_DOCS_DAYS"),
                      ("logs", "TIERING_RETAIN_LOGS_DAYS")):
        cleanup.add_argument(f"--{kind}-days", type=float, help=f"days to keep (default: ${env}, unset: for ever)")
    cleanup.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    cleanup.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)

    migrate = sub.add_parser("migrate", help="move a warehouse built by the previous core (schema raw) to the "
                                             "change-log core, keeping every result (docs/upgrading.md)")
    migrate.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    migrate.add_argument("--dry-run", action="store_true", help="say what it would do, change nothing")
    migrate.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


# What `tiering query` runs: reading statements only. The sandboxed connection (no files, no
# ATTACH, locked settings) is what enforces it; this list gives the one-line reason up front.
QUERY_STATEMENTS = ("SELECT", "EXPLAIN", "PRAGMA", "CALL")


def cmd_query(args: argparse.Namespace) -> None:
    import duckdb

    from tiering.publish import published_path
    from tiering.warehouse import connect

    path = args.warehouse if args.live else published_path(args.warehouse)
    con = connect(path, read_only=True, sandboxed=True)
    try:
        refused = [s.type.name.lower() for s in con.extract_statements(args.sql)
                   if s.type.name not in QUERY_STATEMENTS]
        if refused:
            raise TieringError(f"query refused on {path}: `tiering query` runs read-only queries (select, "
                               f"explain, show, describe), not {refused[0]} statements")
        result = con.sql(args.sql)
        if result is not None:
            result.show(max_rows=100, max_width=200)
    except duckdb.PermissionException as exc:
        raise TieringError(f"query refused on {path}: {str(exc).splitlines()[0]}; `tiering query` reads the "
                           f"warehouse's own tables only (no files, ATTACH or COPY)") from None
    except duckdb.Error as exc:
        raise TieringError(f"query failed on {path}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def cmd_dbt(args: argparse.Namespace) -> None:
    from tiering.dbt_runner import latest_run_spec, run_dbt
    from tiering.rules import load_rules

    dbt_args = [a for a in args.dbt_args if a != "--"] or ["build"]
    spec = latest_run_spec(args.warehouse, args.rules, args.month)
    if dbt_args[0] in ("build", "run", "test"):
        _show_run_landing(args.warehouse, spec.run_id)   # the models read the partitions that run read
    run_dbt(dbt_args[0], spec, load_rules(args.rules), *dbt_args[1:])


def _show_run_landing(warehouse: Path, run_id: str) -> None:
    """Register the change-log partitions run `run_id` read (its landing manifest) as dbt's landing
    source; nothing when the run or its manifest is unknown (dbt then reads the last run's)."""
    from tiering.landing import load_manifest, manifest_path
    from tiering.warehouse import connect, register_landing

    if not Path(warehouse).exists():
        return
    con = connect(warehouse)
    try:
        row = con.execute("select landing_dir from audit.runs where run_id = ?", [run_id]).fetchone() \
            if con.execute("select count(*) from information_schema.tables where table_schema = 'audit' and "
                           "table_name = 'runs' and table_catalog = current_database()").fetchone()[0] else None
        manifest = manifest_path(warehouse, row[0]) if row else None
        if manifest is not None and manifest.suffix == ".json" and manifest.is_file():   # (not a migrated run's folder)
            register_landing(con, load_manifest(manifest))
    finally:
        con.close()


def cmd_demo_data(args: argparse.Namespace) -> None:
    from tiering.demo import generate
    from tiering.runspec import parse_month

    parse_month(args.start)
    started = time.monotonic()
    counts = generate(args.out, customers=args.customers, months=args.months, seed=args.seed,
                      start_month=args.start, fmt=args.format)
    rows = ", ".join(f"{name}: {n}" for name, n in counts.items())
    print(f"demo source written to {args.out} in {time.monotonic() - started:.1f} s ({rows})")


def _run_months(source: Path, months: list, warehouse: Path, rules_path: Path, restate: bool = False,
                skip_unchanged: bool = False, verbose: bool = False, provisional: bool = False) -> None:
    """Run the DAG for each month; with `skip_unchanged` (backfill without --force), not for a month
    whose last successful run had the same rules and source (tiering.operations)."""
    from functools import lru_cache

    from tiering.airflow_runner import run_month
    from tiering.console import RunConsole
    from tiering.operations import source_fingerprint, unchanged_since
    from tiering.pipeline import format_summary
    from tiering.rules import load_rules
    from tiering.runspec import RunSpec, new_run_id
    from tiering.source import check_source_dir

    rules = load_rules(rules_path)  # fail before any data is written
    check_source_dir(source)
    fingerprint = lru_cache(maxsize=1)(lambda: source_fingerprint(source))   # hashed once, when first needed
    with RunConsole(warehouse, total=len(months), verbose=verbose) as out:
        out.line(f"rules {rules.version} from {rules_path}; warehouse {warehouse}; log {out.log_path}")
        started = time.monotonic()
        ran = 0
        for i, month in enumerate(months, 1):
            previous = unchanged_since(warehouse, month, rules.version, fingerprint) if skip_unchanged else None
            if previous:
                out.month_finished(i, f"{month:%Y-%m} skipped: unchanged since run {previous} (--force reruns it)")
                continue
            # several months from one source: the first run lands them all (RunSpec.land_through)
            spec = RunSpec(month=month, run_id=new_run_id(month), source_dir=source.resolve(),
                           warehouse=warehouse.resolve(), rules_path=rules_path.resolve(), restate=restate,
                           provisional=provisional, land_through=max(months) if len(months) > 1 else None)
            out.month_started(i, spec.month_text, spec.run_id)
            month_started = time.monotonic()
            summary = run_month(spec)
            ran += 1
            out.month_finished(i, f"{format_summary(summary)}  ({time.monotonic() - month_started:.1f} s)")
        out.line(f"done: {ran} of {len(months)} month(s) run in {time.monotonic() - started:.1f} s; "
                 f"warehouse {warehouse}; log {out.log_path}")


def cmd_run(args: argparse.Namespace) -> None:
    from tiering.runspec import check_month_ended, current_month, parse_month

    month = check_month_ended(parse_month(args.month), args.provisional)  # before Airflow starts
    _run_months(args.source, [month], args.warehouse, args.rules, restate=args.restate, verbose=args.verbose,
                provisional=args.provisional and month == current_month())


def cmd_backfill(args: argparse.Namespace) -> None:
    from tiering.runspec import check_month_ended, month_range, parse_month

    months = month_range(parse_month(args.start), parse_month(args.end))
    check_month_ended(months[-1])  # a backfill computes ended months only
    _run_months(args.source, months, args.warehouse, args.rules, restate=args.restate, skip_unchanged=not args.force,
                verbose=args.verbose)


def cmd_explain(args: argparse.Namespace) -> None:
    from tiering.explain import explain, format_explanation
    from tiering.runspec import parse_month

    result = explain(args.warehouse, args.customer, parse_month(args.month))
    print(json.dumps(result, indent=2, default=str) if args.json else format_explanation(result))


def cmd_dq_report(args: argparse.Namespace) -> None:
    from tiering.quality import dq_report, format_dq_report
    from tiering.runspec import parse_month

    if not args.warehouse.exists():
        raise TieringError(f"warehouse {args.warehouse} not found; run a month first (tiering run)")
    rows = dq_report(args.warehouse, parse_month(args.month), args.run_id)
    if not rows:
        raise TieringError(f"no data quality results for {args.month} in {args.warehouse}"
                           + (f" (run {args.run_id})" if args.run_id else "") + "; run the month first")
    print(json.dumps(rows, indent=2, default=str) if args.json else format_dq_report(rows))
    if any(not r["success"] and r["severity"] == "error" for r in rows):
        raise TieringError(f"the quality gates of {args.month} failed (see above)")


def _delegate(module: str, function: str):
    """A command implemented in its own module (imported only when that command runs)."""
    def command(args: argparse.Namespace) -> None:
        import importlib

        getattr(importlib.import_module(module), function)(args)
    return command


COMMANDS = {"demo-data": cmd_demo_data, "run": cmd_run, "backfill": cmd_backfill, "explain": cmd_explain,
            "query": cmd_query, "dbt": cmd_dbt, "dq-report": cmd_dq_report,
            "export": _delegate("tiering.export", "cli_export"),
            "report": _delegate("tiering.report", "cli_report"),
            "publish-postgres": _delegate("tiering.pg_publish", "cli_publish"),
            "crm-export": _delegate("tiering.crm", "cli_crm_export"),
            "backtest-potential": _delegate("tiering.potential", "cli_backtest"),
            "status": _delegate("tiering.operations", "cli_status"),
            "simulate": _delegate("tiering.simulate", "cli_simulate"),
            "forget": _delegate("tiering.forget", "cli_forget"),
            "cleanup": _delegate("tiering.retention", "cli_cleanup"),
            "migrate": _delegate("tiering.migrate", "cli_migrate")}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except TieringError as exc:
        # one line: a message with one line per problem (an invalid rules file) is joined
        print(f"tiering: error: {'; '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"tiering: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tiering: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
