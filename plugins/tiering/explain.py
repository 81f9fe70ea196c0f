"""`tiering explain`: why a customer has its tier in a month, from the warehouse and the run's
landing manifest (the change-log partition versions the run read, with their fingerprints)."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from tiering.errors import TieringError
from tiering.warehouse import connect


def _one(con, sql: str, params: list) -> dict | None:
    cur = con.execute(sql, params)
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def explain(warehouse: Path, customer_id: str, month: date) -> dict:
    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise TieringError(f"warehouse not found: {warehouse}; run `tiering run` first")
    con = connect(warehouse, read_only=True)
    try:
        result = _one(con, """
            select m.*, t.ranked_customers, t.tier_rule, t.annual_spend, t.credit_score, t.gross_margin,
                   t.first_order_date, t.last_order_date, t.rule_tier, t.is_tier_held
            from marts.customer_tier_monthly m
            join intermediate.int_customer_tier_months t using (customer_id, month)
            where m.customer_id = ? and m.month = ?""", [customer_id, month])
        if result is None:
            known = con.execute("select count(*) from marts.customer_tier_monthly where month = ?",
                                [month]).fetchone()[0]
            if not known:
                raise TieringError(f"month {month:%Y-%m} has not been computed in {warehouse}; "
                                   f"run `tiering run --month {month:%Y-%m}` first")
            raise TieringError(f"customer {customer_id!r} is not known in {month:%Y-%m} "
                               f"(no such customer as of that month end)")
        credit = _one(con, "select * from marts.customer_credit_monthly where customer_id = ? and month = ?",
                      [customer_id, month])
        run = _one(con, "select * from audit.runs where run_id = ?", [result["run_id"]])
        quarantined = dict(con.execute(
            "select source_table, count(*) from quarantine.rejected_rows where run_id = ? group by 1",
            [result["run_id"]]).fetchall()) if _has_table(con, "quarantine", "rejected_rows") else {}
        rules_row = con.execute("select content from audit.rule_versions where rule_version = ?",
                                [result["rule_version"]]).fetchone()
    finally:
        con.close()
    rules = json.loads(rules_row[0]) if rules_row else {}
    final, value, grade = result["final_tier"], result["value_tier"], result["credit_grade"]
    return {
        "customer": result,
        "credit": credit,
        "thresholds": rules.get("value", {}).get(result["rule_set"], {}),
        "matrix_rule": f"matrix[{value}][{grade}] = {final}" + (" (credit hold)" if result["credit_hold"] else ""),
        "run": run,
        "inputs": run_inputs(run, quarantined, warehouse),
    }


def _has_table(con, schema: str, table: str) -> bool:
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? "
                            "and table_name = ? and table_catalog = current_database()", [schema, table]).fetchone()[0])


def run_inputs(run: dict | None, quarantined: dict[str, int], warehouse: Path) -> dict:
    """What the run read, from its landing manifest (audit.runs.landing_dir): per table the source
    file and the change-log partition versions with their fingerprints (rows, content hash), and
    whether they still give the run's input checksum. A manifest gone (deleted by hand, or by a
    retention) is said, not guessed."""
    from tiering.landing import load_manifest, manifest_path
    from tiering.pipeline import input_checksum

    path = manifest_path(warehouse, run.get("landing_dir")) if run else None
    try:
        manifest = load_manifest(path) if path else None
    except (OSError, ValueError):
        manifest = None
    if manifest is None:
        return {"manifest": str(path) if path else None, "available": False, "tables": []}
    tables = [{"source_table": name, "source_file": t.get("source_file"), "source_sha256": t.get("source_sha256"),
               "rows": t["rows"], "quarantined": quarantined.get(name, 0), "landed_by_run": t.get("landed", []),
               "partitions": [{"partition": p, **v} for p, v in sorted(t["partitions"].items())]}
              for name, t in sorted(manifest["tables"].items())]
    return {"manifest": str(path), "available": True, "restatement": manifest.get("restatement"),
            "checksum_matches": input_checksum(manifest) == run.get("input_checksum"), "tables": tables}


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{value:.4%}"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def format_explanation(result: dict) -> str:
    c, credit, run = result["customer"], result["credit"] or {}, result["run"] or {}
    lines = [
        f"customer {c['customer_id']} in {c['month']:%Y-%m}: final tier {c['final_tier']} "
        f"(value tier {c['value_tier']}, credit grade {c['credit_grade']}), movement {c['movement']}"
        + (f" from {c['previous_final_tier']}" if c["previous_final_tier"] else ""),
    ]
    if c.get("is_provisional"):
        lines.append(f"PROVISIONAL: {c['month']:%Y-%m} had not ended when it was computed (run {c['run_id']}); "
                     f"the figures can still change")
    lines += [
        "",
        "value (trailing window, reporting currency)",
        f"  net revenue      {float(c['net_revenue']):,.2f}   orders {c['order_count']}   "
        f"recency {_fmt(c['recency_days'])} days   active {c['is_active']}",
        f"  rank             {_fmt(c['value_rank'])} of {c['ranked_customers']} customers with positive value",
        f"  value share      {_fmt(c['value_share'], True)}",
        f"  prior share      {_fmt(c['prior_share'], True)}   cumulative share {_fmt(c['cumulative_share'], True)}",
        f"  value measure    {c.get('value_measure') or 'net_revenue'}   ranking value "
        f"{_fmt(float(c['ranking_value']) if c.get('ranking_value') is not None else None)}"
        + (f"   gross margin {_fmt(float(c['gross_margin']))}" if c.get("gross_margin") is not None else "")
        + ("   dormant (no positive value in the window, an earlier purchase)" if c.get("is_dormant") else ""),
        f"  rule set         {c['rule_set']}: {c['tier_rule']}",
        f"  thresholds       {json.dumps(result['thresholds'])}",
        f"  key account      {c['is_key_account']}",
    ]
    if c.get("is_tier_held"):
        lines.append(f"  hysteresis       rule tier this month {c['rule_tier']}; value tier {c['value_tier']} held "
                     f"(value.downgrade_after_months: a downgrade waits for consecutive months below)")
    overdue, limit = credit.get("overdue_balance"), credit.get("suggested_credit_limit")
    lines += [
        "",
        "credit",
        f"  grade {credit.get('credit_grade', '-')}, score {_fmt(credit.get('credit_score'))}, "
        f"invoices {credit.get('invoice_count', 0)}, on-time rate {_fmt(credit.get('on_time_rate'), True)}, "
        f"avg days late {_fmt(credit.get('avg_days_late'))}, worst {_fmt(credit.get('max_days_late'))}",
        f"  overdue balance {_fmt(float(overdue) if overdue is not None else None)}"
        f" ({credit.get('dpd_bucket', '-')}), arrears {credit.get('arrears_flag', '-')}, "
        f"suggested limit {_fmt(float(limit) if limit is not None else None)}",
        "",
        f"matrix            {result['matrix_rule']}",
        f"customer code     {c['customer_code']}",
        f"rule version      {c['rule_version']}",
        f"run               {c['run_id']} ({run.get('status', '?')}, finished {run.get('finished_at', '-')}, "
        f"input checksum {str(run.get('input_checksum') or '-')[:16]})",
    ]
    return "\n".join(lines + _format_inputs(result["inputs"]))


def _format_inputs(inputs: dict) -> list[str]:
    """The partitions the run read, one line per table: `<partition> v<version> (<rows> rows, #<hash>)`."""
    if not inputs["available"]:
        return [f"input partitions  unknown: the run's landing manifest {inputs['manifest'] or '(none recorded)'} "
                f"is gone"]
    check = ("they give the run's input checksum" if inputs["checksum_matches"] else
             "they do NOT give the run's input checksum: the manifest was changed after the run")
    lines = [f"input partitions  from {inputs['manifest']} ({check})"]
    for t in inputs["tables"]:
        read = ", ".join(f"{p['partition']} v{p['version']} ({p['rows']} rows, #{p['hash']})" for p in t["partitions"])
        lines.append(f"  {t['source_table']}: {t['source_file'] or 'no source file'}, {t['rows']} rows read, "
                     f"{t['quarantined']} quarantined by this run; {read or 'no partition'}")
    return lines
