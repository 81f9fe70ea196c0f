"""Run dbt for one month, in this process (dbtRunner).

In-process because importing dbt costs seconds: a backfill's months share one
import. dbt-duckdb keeps its DuckDB connection open in the process after an
invocation, which would lock the warehouse for the next step, so every
invocation is followed by `_close_duckdb()`. The month, the run and the
validated rules are passed as dbt vars.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from tiering import pii
from tiering.errors import DbtError
from tiering.rules import Rules
from tiering.runspec import RunSpec, add_months
from tiering.settings import DBT_PROJECT_DIR
from tiering.source import SPECIAL_TIMESTAMPS


def dbt_vars(spec: RunSpec, rules: Rules) -> dict:
    value_window = rules.data["value"]["window_months"]
    credit_window = rules.data["credit"]["window_months"]
    return {
        "month": f"{spec.month}",
        "next_month": f"{spec.next_month}",
        "as_of_cutoff": spec.as_of_cutoff,
        "month_last_day": f"{spec.next_month - timedelta(days=1)}",
        "value_window_start": f"{add_months(spec.month, 1 - value_window)}",
        "credit_window_start": f"{add_months(spec.month, 1 - credit_window)}",
        "run_id": spec.run_id,
        "rule_version": rules.version,
        "rules": rules.data,
        # the month had not ended when it was computed: the marts mark its rows is_provisional
        "is_provisional": spec.provisional,
        # the row rules' definitions kept in Python (macros/row_rules.sql, cross_db.sql)
        "special_timestamps": list(SPECIAL_TIMESTAMPS),
        "pii": {"email": pii.EMAIL_PATTERN, "phone": pii.PHONE_PATTERN, "min_digits": pii.PHONE_MIN_DIGITS},
    }


def _close_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process (releases the file lock)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if env is not None:
            env.close()


# Parsed manifests by rule version and warehouse file name: parsing costs seconds and only
# these change what is parsed (the file name is the DuckDB catalog every node names; every var
# the models use is rendered again when a node is compiled, at run time), so a backfill parses
# once and every month's invocations reuse the manifest.
_MANIFESTS: dict[tuple[str, str], object] = {}

# dbt keeps the parse in <target>/partial_parse.msgpack for the next process, but parses
# everything again (~10 s) when the vars or the profile differ from the saved ones, and every
# month's vars (month, run id) and warehouse path do. Parsing does not depend on them, so it
# gets fixed stand-ins: a new process (every Airflow task is one) then parses in ~2 s.
_PARSE_MONTH = date(2000, 1, 1)
_PARSE_DIR = Path("/parse-placeholder")


def _project_args() -> list[str]:
    return ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]


@contextmanager
def _warehouse_env(path: Path):
    """TIERING_WAREHOUSE (read by profiles.yml) set to `path` for the block, then put back."""
    previous = os.environ.get("TIERING_WAREHOUSE")
    os.environ["TIERING_WAREHOUSE"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TIERING_WAREHOUSE", None)
        else:
            os.environ["TIERING_WAREHOUSE"] = previous


def _manifest(spec: RunSpec, rules: Rules, marts_schema: str = "marts"):
    """(The schema of the marts, var marts_schema, is fixed when parsing: a pipeline run builds them
    into marts_pending, tiering.marts_build; it passes it to every build, staging's too, so that
    its steps share one parse.)"""
    from dbt.cli.main import dbtRunner

    key = (rules.version, Path(spec.warehouse).name, marts_schema)
    if key not in _MANIFESTS:
        stand_in = RunSpec(month=_PARSE_MONTH, run_id="parse", source_dir=Path("."),
                           warehouse=_PARSE_DIR / key[1])
        parse_vars = {**dbt_vars(stand_in, rules),
                      **({"marts_schema": marts_schema} if marts_schema != "marts" else {})}
        try:
            with _warehouse_env(stand_in.warehouse):
                result = dbtRunner().invoke(["parse", *_project_args(), "--vars", json.dumps(parse_vars)])
        finally:
            _close_duckdb()
        if not result.success:
            raise DbtError(f"dbt parse failed: {result.exception or 'see the log above'}")
        _MANIFESTS[key] = result.result
    return _MANIFESTS[key]


def run_dbt(command: str, spec: RunSpec, rules: Rules, *args: str, extra_vars: dict | None = None) -> dict:
    """`dbt <command> <args>` for the run's month (vars: dbt_vars, plus `extra_vars`). Raises
    DbtError naming the failed nodes."""
    from dbt.cli.main import dbtRunner

    os.environ["TIERING_WAREHOUSE"] = str(Path(spec.warehouse).resolve())
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("DBT_VERSION_CHECK", "false")
    base_args = [*_project_args(), "--vars", json.dumps({**dbt_vars(spec, rules), **(extra_vars or {})})]
    started = time.monotonic()
    try:
        runner = dbtRunner(manifest=_manifest(spec, rules, (extra_vars or {}).get("marts_schema", "marts"))) \
            if command in ("build", "run", "test") \
            else dbtRunner()
        # dbt's command groups take their subcommand before any option: `dbt docs generate --vars ...`
        sub = list(args[:1]) if command in ("docs", "source") else []
        result = runner.invoke([command, *sub, *base_args, *args[len(sub):]])
    finally:
        _close_duckdb()
    seconds = round(time.monotonic() - started, 2)
    if not result.success:
        failures = []
        for node in getattr(result.result, "results", None) or []:
            status = str(getattr(node.status, "value", node.status))
            if status in ("error", "fail", "runtime error"):
                failures.append(f"{node.node.name}: {status} ({(node.message or '').strip()[:300]})")
        detail = "; ".join(failures) or str(result.exception or "see the task log")
        raise DbtError(f"dbt {command} failed for {spec.month_text} ({' '.join(args)}): {detail}"[:2000])
    return {"command": command, "args": list(args), "seconds": seconds}


def latest_run_spec(warehouse: Path, rules_path: Path, month: str | None = None) -> RunSpec:
    """A RunSpec for ad-hoc dbt commands: the given month or the latest successful run's month,
    reading that run's batch (so staging models see what the run saw)."""
    from tiering.runspec import parse_month
    from tiering.warehouse import connect

    row = None
    if Path(warehouse).exists():
        con = connect(warehouse, read_only=True)
        try:
            sql = "select month, run_id from audit.runs where status = 'success' {} order by month desc, " \
                  "finished_at desc limit 1"
            row = (con.execute(sql.format("and month = ?"), [parse_month(month)]).fetchone() if month
                   else con.execute(sql.format("")).fetchone())
        except Exception:
            row = None
        finally:
            con.close()
    if row:
        chosen, run_id = row
    else:
        chosen, run_id = (parse_month(month) if month else parse_month("2024-01")), "adhoc"
    return RunSpec(month=chosen, run_id=run_id, source_dir=Path("."), warehouse=Path(warehouse),
                   rules_path=Path(rules_path))
