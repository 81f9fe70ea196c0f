"""Where one month's run spends its time: every step (wall and CPU seconds), every dbt node, every
SQL statement over a threshold and, on request, any function.

    .venv/bin/python bench/profile_month.py --month 2024-12 --source /tmp/tiering-bench/L/source \\
        --warehouse /tmp/prof/a/tiering.duckdb --copy-from /tmp/prof/base/tiering.duckdb \\
        --duckdb-memory 1GB --threads 2 --out /tmp/prof/a.json

`--copy-from` runs the month on a copy of a warehouse that holds the month before (built once,
e.g. a cold run of that month with this script): the copy gets the base's published BI copy (its
modification time kept, so publishing replaces the month as in a real next month), a change log
of its own whose partition files are links to the base's (immutable) and whose catalog and run
manifests are copies naming the copy's paths, and the copied audit tables point at the copy. Every
profile of the same base then measures the same steady-state month, which is how changes were
compared in bench/RESULTS.md. The staging models are incremental by landed partition: the copy
types only the partitions the month lands; the partitions the base typed stay as its code typed
them (drop staging.stg_landing__* on the copy to profile a changed staging model on every one).

The steps run in this process without Airflow (the bench's `steady` scenario gives the Airflow
overhead). The timers are the bench's (`bench/run.py _instrument`); dbt nodes are timed by dbt
itself; SQL statements are timed on the connections of tiering.warehouse.connect and of the
landing and potential steps; `--functions module:name,...` times any module-level function
(total seconds over its calls), named in the module that calls it (a name imported with `from`
is that module's own), e.g. `tiering.quality:build_gate,tiering.files:sha256_file`.
The bench's machine speed probe runs before and after the month (`--no-speed-probe` skips it):
the machine's speed drifts, and profiles compare only beside it.
The report is printed and written as JSON (`--out`).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))

# modules whose DuckDB connections are timed statement by statement (they call duckdb.connect)
TIMED_CONNECTION_MODULES = ("tiering.warehouse", "tiering.landing", "tiering.potential")


class _TimedConnection:
    """A DuckDB connection whose execute() and sql() record statements slower than the threshold."""

    def __init__(self, con, statements: list, threshold: float):
        self._con, self._statements, self._threshold = con, statements, threshold

    def __getattr__(self, name):
        return getattr(self._con, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._con.__exit__(*exc)

    def _timed(self, method, query, args, kwargs):
        started = time.monotonic()
        result = getattr(self._con, method)(query, *args, **kwargs)
        seconds = time.monotonic() - started
        if seconds >= self._threshold:
            self._statements.append([round(seconds, 2), " ".join(str(query).split())[:200]])
        return result

    def execute(self, query, *args, **kwargs):
        import duckdb

        result = self._timed("execute", query, args, kwargs)
        # (execute returns the connection: keep timing what is chained on it)
        return self if isinstance(result, duckdb.DuckDBPyConnection) else result

    def sql(self, query, *args, **kwargs):
        return self._timed("sql", query, args, kwargs)


def _time_sql(statements: list, threshold: float) -> None:
    import duckdb

    def connect(*args, **kwargs):
        con = duckdb.connect(*args, **kwargs)
        # DuckDB finds a Python object a query names (a DataFrame: tiering.potential) in the frame
        # that called execute(), which is now _TimedConnection's: let it look further up the stack
        con.execute("set python_scan_all_frames = true")
        return _TimedConnection(con, statements, threshold)

    shim = types.ModuleType("duckdb_timed")
    shim.__dict__.update(duckdb.__dict__)
    shim.connect = connect
    for name in TIMED_CONNECTION_MODULES:
        importlib.import_module(name).duckdb = shim


def _timed_function(fn, name: str, totals: dict):
    def timed(*args, **kwargs):
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] = round(totals.get(name, 0.0) + time.monotonic() - started, 3)
    return timed


def _time_functions(specs: list[str], totals: dict) -> None:
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        module = importlib.import_module(module_name)
        if not attr or not callable(getattr(module, attr, None)):
            raise SystemExit(f"--functions: {spec!r} is no function (expected module:name, "
                             f"e.g. tiering.landing:extract_and_land)")
        setattr(module, attr, _timed_function(getattr(module, attr), spec, totals))


def _time_dbt_nodes(nodes: list) -> None:
    from dbt.cli.main import dbtRunner

    invoke = dbtRunner.invoke

    def timed_invoke(self, args, **kwargs):
        result = invoke(self, args, **kwargs)
        for node in getattr(result.result, "results", None) or []:
            nodes.append([round(node.execution_time, 2), node.node.name])
        return result

    dbtRunner.invoke = timed_invoke


def copy_change_log(base_root: Path, root: Path) -> None:
    """The change log at `root` made a copy of the one at `base_root`: its partition files linked
    (never written again: a new version is a new file), its catalog and run manifests (rewritten
    by every run) copied with the base's paths replaced by the copy's."""
    root.mkdir(parents=True, exist_ok=True)
    if not base_root.is_dir():
        return
    old, new = f"{base_root}/", f"{root}/"
    for path in sorted(base_root.rglob("*")):
        relative = path.relative_to(base_root)
        if relative.parts[0] == "_tmp" or path.is_dir():
            continue
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":   # _catalog.json, _runs/<run_id>.json: they name the files by path
            target.write_text(path.read_text().replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1]))
        else:
            target.symlink_to(path)


def copy_warehouse(base: Path, warehouse: Path) -> None:
    """`warehouse` (a file in a new folder) made a copy of `base`: file, published BI copy (mtime
    kept), its change log (copy_change_log), and its audit tables' paths rewritten."""
    import duckdb

    from tiering.settings import landing_root

    base, warehouse = base.resolve(), warehouse.resolve()
    if not base.is_file():
        raise SystemExit(f"--copy-from {base}: no such warehouse file (build the base month first)")
    if warehouse.exists():
        raise SystemExit(f"--warehouse {warehouse} exists: profile on a new path (a copy is made there)")
    base_root, root = landing_root(base), landing_root(warehouse)
    if base_root == root:
        raise SystemExit(f"the base and the copy share the change log {root} ($TIERING_LANDING_DIR): unset it to "
                         f"profile on a copy")
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base, warehouse)
    if (base.parent / "published").is_dir():
        shutil.copytree(base.parent / "published", warehouse.parent / "published", copy_function=shutil.copy2)
    copy_change_log(base_root, root)
    # (DuckDB's default memory limit: the rewrite below updates every typed row, whose undo buffers
    # do not spill, so it takes GBs at L; main() runs this function in a process of its own)
    con = duckdb.connect(str(warehouse))
    try:
        # the run manifests (audit.runs.landing_dir), the change log's files that staging typed (landing_file)
        con.execute("update audit.runs set landing_dir = replace(landing_dir, ?, ?)", [f"{base_root}/", f"{root}/"])
        for (table,) in con.execute("select table_name from information_schema.columns where table_schema = "
                                    "'staging' and column_name = 'landing_file'").fetchall():
            con.execute(f"update staging.{table} set landing_file = replace(landing_file, ?, ?)",
                        [f"{base_root}/", f"{root}/"])
        if con.execute("select count(*) from information_schema.tables where table_schema = 'audit' "
                       "and table_name = 'publish_state'").fetchone()[0]:
            con.execute("update audit.publish_state set path = replace(path, ?, ?)",
                        [f"{base.parent}/", f"{warehouse.parent}/"])
    finally:
        con.close()


def profile_month(month: str, source: Path, warehouse: Path, sql_threshold: float = 0.3,
                  functions: list[str] | None = None, probe_threads: int = 0) -> dict:
    """Run every step of `month` on `warehouse`; the timings. With `probe_threads`, the bench's
    machine speed probe runs before and after the month: the same code's month has differed by 7%
    within an hour with the probe reading 0.13-0.15 s and then 0.17-0.18 s, so profiles of two
    variants compare only beside the probe."""
    from run import _cpu_seconds, _instrument, speed_probe

    probes = {"before": speed_probe(probe_threads)} if probe_threads else {}

    statements: list = []
    nodes: list = []
    function_totals: dict = {}
    _time_sql(statements, sql_threshold)
    timings = _instrument(None)
    _time_functions(functions or [], function_totals)
    _time_dbt_nodes(nodes)
    from tiering import pipeline
    from tiering.quality import import_gx
    from tiering.steps import STEPS

    import_gx()   # a one-off import of the process, as in the bench
    _reset_peak_rss()
    started, cpu = time.monotonic(), _cpu_seconds()
    run = pipeline.start_run({"month": month, "source_dir": str(source), "warehouse": str(warehouse)})
    for step in STEPS:
        getattr(pipeline, step)(run)
        print(f"[profile] {step}: {timings['current'][step]:.1f} s", flush=True)
    wall_s, cpu_s = round(time.monotonic() - started, 2), round(_cpu_seconds() - cpu, 2)
    if probe_threads:
        probes["after"] = speed_probe(probe_threads)

    return {"month": month, "warehouse": str(warehouse), "run_id": run["run_id"],
            "wall_s": wall_s, "cpu_s": cpu_s, "speed_probe_s": probes,
            "steps_s": dict(timings["current"]), "steps_cpu_s": dict(timings["cpu"]),
            "dbt_nodes_s": sorted(nodes, reverse=True), "dbt_nodes_total_s": round(sum(n[0] for n in nodes), 2),
            "sql_statements_s": sorted(statements, reverse=True), "functions_s": function_totals,
            "peak_rss_mb": _peak_rss_mb()}


def _reset_peak_rss() -> None:
    """Start the process's peak RSS afresh (Linux: clear_refs 5), so that the month's peak is not
    the copy's (--copy-from) or the imports'."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        print("[profile] cannot reset the peak RSS (no /proc/self/clear_refs): it includes the setup", flush=True)


def _peak_rss_mb() -> int:
    """The process's peak RSS since _reset_peak_rss (VmHWM), in MB (dbt and DuckDB run in it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def report(result: dict, top: int) -> str:
    lines = [f"month {result['month']} on {result['warehouse']}: {result['wall_s']} s, "
             f"{result['cpu_s']} CPU s ({result['cpu_s'] / max(result['wall_s'], 1e-9):.2f} cores busy), "
             f"peak RSS {result['peak_rss_mb']} MB"]
    if result.get("speed_probe_s"):
        lines.append("machine speed probe (bench/run.py speed_probe; lower is faster): "
                     + ", ".join(f"{when} {seconds:.3f} s" for when, seconds in result["speed_probe_s"].items()))
    lines += ["", "step                   wall s   CPU s"]
    lines += [f"{step:<22} {wall:>6.1f} {result['steps_cpu_s'].get(step, 0):>7.1f}"
              for step, wall in result["steps_s"].items()]
    lines += ["", f"dbt nodes ({result['dbt_nodes_total_s']} s in all), the {top} slowest:"]
    lines += [f"  {seconds:>6.2f}  {name}" for seconds, name in result["dbt_nodes_s"][:top]]
    lines += ["", f"SQL statements, the {top} slowest:"]
    lines += [f"  {seconds:>6.2f}  {text[:150]}" for seconds, text in result["sql_statements_s"][:top]]
    if result["functions_s"]:
        lines += ["", "functions (total over their calls):"]
        lines += [f"  {seconds:>6.2f}  {name}" for name, seconds in sorted(result["functions_s"].items(),
                                                                         key=lambda kv: -kv[1])]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Profile one month's run step by step (bench/profile_month.py).")
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--source", required=True, type=Path, help="source folder (e.g. the bench's)")
    parser.add_argument("--warehouse", required=True, type=Path, help="warehouse file the month runs on")
    parser.add_argument("--copy-from", type=Path, help="make --warehouse a copy of this warehouse first")
    parser.add_argument("--duckdb-memory", default=os.environ.get("TIERING_DUCKDB_MEMORY_LIMIT", "1GB"))
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("TIERING_DUCKDB_THREADS", os.cpu_count() or 2)))
    parser.add_argument("--sql-threshold", type=float, default=0.3, help="seconds from which a statement is listed")
    parser.add_argument("--functions", default="", help="module:name,... to time as well")
    parser.add_argument("--top", type=int, default=25, help="how many nodes and statements to print")
    parser.add_argument("--out", type=Path, help="JSON file of the full result")
    parser.add_argument("--no-speed-probe", action="store_true",
                        help="skip the machine speed probe before and after the month (about 1 s each)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ["TIERING_DUCKDB_MEMORY_LIMIT"] = args.duckdb_memory
    os.environ["TIERING_DUCKDB_THREADS"] = str(args.threads)
    if args.copy_from:
        # in a child process: the copy's memory is not the month's (peak RSS)
        import multiprocessing

        child = multiprocessing.get_context("spawn").Process(target=copy_warehouse,
                                                             args=(args.copy_from, args.warehouse))
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(f"copying {args.copy_from} failed (exit {child.exitcode})")
    result = profile_month(args.month, args.source, args.warehouse, args.sql_threshold,
                           [f for f in args.functions.split(",") if f.strip()],
                           0 if args.no_speed_probe else args.threads)
    print(report(result, args.top))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
