"""`tiering simulate`: a month's tiers under another rules file, before that file goes live.

    tiering simulate --rules NEW.yml --month YYYY-MM [--out FILE.csv] [--warehouse FILE]

The month is computed again from the change-log partitions its last successful run read, in a
temporary copy of the warehouse: the live marts, `audit`, the published copy BI reads and
PostgreSQL are never written. Steps:
1. While a read-only connection holds the warehouse (so no writer can start), the file is copied
   into a temporary directory under the same file name (dbt's nodes name the DuckDB catalog by
   it). A plain file copy: no query, no re-encoding, the fastest way to an identical database.
2. The month's as-of rows (intermediate.as_of) are kept when the warehouse's last dbt command was
   the run's own (audit.dbt_invocations): they are then the ones it computed. Otherwise the run's
   partition versions (its landing manifest, audit.runs.landing_dir) are registered on the copy
   and dbt builds staging, the as-of rows and quarantine there, as transform_staging does (staging
   types only the partitions it does not hold yet).
3. On the copy, dbt builds the rest (intermediate, marts, audit) for the month with the new rules'
   vars (what transform_marts runs), its target and log directories in the temporary directory too.
4. The live month (its final tiers as published) is compared with the simulated one: tier counts
   and revenue shares under both rules, and the migration matrix (rows: current final tier,
   columns: simulated final tier); the customers that would change tier go to --out.
The temporary directory is removed afterwards.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from tiering.errors import TieringError
from tiering.landing import load_manifest, manifest_path
from tiering.rules import Rules, load_rules
from tiering.runspec import RunSpec
from tiering.warehouse import connect

TIERS = ("A", "B", "C", "D")

_TIER_ROWS_SQL = """
    select customer_id, final_tier, net_revenue, {ranking} as ranking_value, {measure} as value_measure, rule_version
    from marts.customer_tier_monthly where month = ?"""


def _tier_rows(con, month: date) -> dict[str, tuple]:
    """customer_id -> (final_tier, net_revenue, ranking_value, value_measure, rule_version) of the month."""
    columns = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = 'marts' "
        "and table_name = 'customer_tier_monthly' and table_catalog = current_database()").fetchall()}
    # a warehouse built before value.measure existed ranked by net revenue
    ranking = "ranking_value" if "ranking_value" in columns else "net_revenue"
    measure = "value_measure" if "value_measure" in columns else "'net_revenue'"
    rows = con.execute(_TIER_ROWS_SQL.format(ranking=ranking, measure=measure), [month]).fetchall()
    return {r[0]: (r[1], float(r[2]), float(r[3]) if r[3] is not None else None, r[4], r[5]) for r in rows}


@contextmanager
def _env(**values: str):
    """Environment variables set for the block, then put back."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _copy_warehouse(warehouse: Path, month: date, target_dir: Path) -> tuple[Path, dict]:
    """Copy the warehouse file while a read-only connection keeps writers out; read what the
    simulation needs from the live file in the same hold: the month's last successful run (with its
    landing manifest), the run of the last dbt command and the month's current tiers."""
    con = connect(warehouse, read_only=True)
    try:
        run = con.execute("""select run_id, rule_version, landing_dir from audit.runs
                             where month = ? and status = 'success' order by finished_at desc limit 1""",
                          [month]).fetchone()
        if run is None:
            raise TieringError(f"month {month:%Y-%m} has no successful run in {warehouse}; "
                               f"run `tiering run --month {month:%Y-%m}` first")
        last_dbt = con.execute("select run_id from audit.dbt_invocations order by seq desc limit 1").fetchone() \
            if con.execute("select count(*) from information_schema.tables where table_schema = 'audit' and "
                           "table_name = 'dbt_invocations' and table_catalog = current_database()").fetchone()[0] \
            else None
        current = _tier_rows(con, month)
        rules_row = con.execute("select content from audit.rule_versions where rule_version = ?",
                                [run[1]]).fetchone()
        copy = target_dir / warehouse.name
        shutil.copyfile(warehouse, copy)
        wal = warehouse.with_name(warehouse.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
    finally:
        con.close()
    return copy, {"run_id": run[0], "rule_version": run[1], "landing_manifest": manifest_path(warehouse, run[2]),
                  "as_of_held": bool(last_dbt) and last_dbt[0] == run[0], "current": current,
                  "run_rules": json.loads(rules_row[0]) if rules_row else {}}


def simulate(warehouse: Path, rules_path: Path, month: date, out: Path | None = None) -> dict:
    """Compute `month` under `rules_path` in a temporary copy of `warehouse`; return the comparison."""
    from tiering import pipeline
    from tiering.dbt_runner import run_dbt

    warehouse = Path(warehouse).resolve()
    if not warehouse.is_file():
        raise TieringError(f"warehouse not found: {warehouse}; run `tiering run` first")
    rules: Rules = load_rules(rules_path)
    with tempfile.TemporaryDirectory(prefix="tiering-simulate-") as tmp:
        tmp_dir = Path(tmp)
        copy, live = _copy_warehouse(warehouse, month, tmp_dir)
        if not live["current"]:
            raise TieringError(f"month {month:%Y-%m} has no rows in marts.customer_tier_monthly of {warehouse}")
        run_currency = live["run_rules"].get("reporting_currency")
        if run_currency and run_currency != rules.data["reporting_currency"]:
            raise TieringError(f"{rules_path}: reporting_currency {rules.data['reporting_currency']} differs from "
                               f"{run_currency} of the month's run; simulate compares rules on the same loaded data, "
                               f"so run the month with the new currency instead")
        spec = RunSpec(month=month, run_id=live["run_id"], source_dir=Path("."), warehouse=copy,
                       rules_path=Path(rules_path))
        # dbt's target and logs in the temporary directory, only its errors on the console (a failed
        # node is named in the error); TIERING_WAREHOUSE (set by run_dbt) put back afterwards
        with _env(DBT_TARGET_PATH=str(tmp_dir / "target"), DBT_LOG_PATH=str(tmp_dir / "logs"),
                  DBT_QUIET="true", TIERING_WAREHOUSE=str(copy)):
            as_of_rebuilt = not live["as_of_held"]
            if as_of_rebuilt:
                _register_run_landing(copy, live["run_id"], live["landing_manifest"])
                run_dbt("build", spec, rules, "--select", *pipeline.STAGING_SELECTION, *pipeline.PRODUCTION_BUILD)
            run_dbt("build", spec, rules, "--exclude", *pipeline.STAGING_SELECTION,
                    "--indirect-selection", "cautious", *pipeline.PRODUCTION_BUILD)
        con = connect(copy, read_only=True)
        try:
            simulated = _tier_rows(con, month)
        finally:
            con.close()
    result = compare(live["current"], simulated)
    result.update(month=f"{month:%Y-%m}", run_id=live["run_id"], current_rule_version=live["rule_version"],
                  simulated_rule_version=rules.version, as_of_rebuilt=as_of_rebuilt)
    if out is not None:
        write_changes(result["changes"], Path(out))
    return result


def _register_run_landing(copy: Path, run_id: str, manifest_path: str | None) -> None:
    """Show dbt on the copy the partition versions the run read (landing.partitions and views)."""
    from tiering.warehouse import register_landing

    try:
        manifest = load_manifest(manifest_path)
    except (TypeError, OSError, ValueError) as exc:
        raise TieringError(f"the landing manifest of run {run_id} ({manifest_path}) is not readable ({exc}): its "
                           f"as-of rows cannot be rebuilt; run the month again, then simulate") from None
    con = connect(copy)
    try:
        register_landing(con, manifest)
    finally:
        con.close()


def compare(current: dict[str, tuple], simulated: dict[str, tuple]) -> dict:
    """Tier counts and revenue shares under both rules, the migration matrix and the changes."""
    def tiers(rows: dict[str, tuple]) -> dict:
        total = sum(r[1] for r in rows.values())
        out = {}
        for tier in TIERS:
            members = [r for r in rows.values() if r[0] == tier]
            revenue = sum(r[1] for r in members)
            out[tier] = {"customers": len(members), "net_revenue": revenue,
                         "revenue_share": revenue / total if total else 0.0}
        return out

    matrix = {a: {b: 0 for b in TIERS} for a in TIERS}
    changes = []
    for cid in sorted(set(current) | set(simulated)):
        now, sim = current.get(cid), simulated.get(cid)
        if now and sim:
            matrix[now[0]][sim[0]] += 1
        if now is None or sim is None or now[0] != sim[0]:
            changes.append({"customer_id": cid, "current_tier": now[0] if now else None,
                            "simulated_tier": sim[0] if sim else None,
                            "current_ranking_value": now[2] if now else None,
                            "simulated_ranking_value": sim[2] if sim else None,
                            "current_value_measure": now[3] if now else None,
                            "simulated_value_measure": sim[3] if sim else None})
    measure = lambda rows: next(iter(rows.values()))[3] if rows else None  # noqa: E731
    return {"current": tiers(current), "simulated": tiers(simulated), "matrix": matrix, "changes": changes,
            "current_measure": measure(current), "simulated_measure": measure(simulated)}


CHANGE_COLUMNS = ("customer_id", "current_tier", "simulated_tier", "current_ranking_value",
                  "simulated_ranking_value", "current_value_measure", "simulated_value_measure")


def write_changes(changes: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CHANGE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in changes:
            writer.writerow({k: ("" if row[k] is None else round(row[k], 2) if isinstance(row[k], float) else row[k])
                             for k in CHANGE_COLUMNS})
    tmp.replace(out)


def format_simulation(result: dict) -> str:
    lines = [
        f"simulation of {result['month']} (change-log partitions read by run {result['run_id']}"
        + (", as-of rows rebuilt from them on the copy" if result["as_of_rebuilt"] else "") + ")",
        f"  current:   {result['current_rule_version']} (ranked by {result['current_measure']})",
        f"  simulated: {result['simulated_rule_version']} (ranked by {result['simulated_measure']})",
        "",
        "tier   current customers  revenue share   simulated customers  revenue share",
    ]
    for tier in TIERS:
        c, s = result["current"][tier], result["simulated"][tier]
        lines.append(f"{tier:<6} {c['customers']:>17}  {c['revenue_share']:>13.1%}   "
                     f"{s['customers']:>19}  {s['revenue_share']:>13.1%}")
    lines += ["", "migration (rows: current final tier, columns: simulated final tier)",
              "         " + "".join(f"{t:>7}" for t in TIERS) + "    total"]
    for tier in TIERS:
        row = result["matrix"][tier]
        lines.append(f"  {tier:<6} " + "".join(f"{row[t]:>7}" for t in TIERS) + f"{sum(row.values()):>9}")
    lines.append(f"{len(result['changes'])} customer(s) would change tier")
    return "\n".join(lines)


def cli_simulate(args) -> None:
    from tiering.runspec import parse_month

    result = simulate(args.warehouse, args.rules, parse_month(args.month), args.out)
    print(format_simulation(result))
    if args.out:
        print(f"changes written to {args.out}")
