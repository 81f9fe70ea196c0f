"""`tiering explain`: why a customer has its tier in a month, from the warehouse alone."""
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
        batches = con.execute("""
            select source_table, source_file, extracted_rows, loaded_rows, quarantined_rows, landed_sha256,
                   coalesce(snapshot_rows, extracted_rows), base_run_id
            from audit.load_batches where run_id = ? order by source_table""", [result["run_id"]]).fetchall()
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
        "input_batches": [dict(zip(["source_table", "source_file", "extracted", "loaded", "quarantined",
                                    "landed_sha256", "as_of_rows", "base_run_id"], b, strict=True)) for b in batches],
    }


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
        "input batches     " + ", ".join(
            f"{b['source_table']}: {b['as_of_rows']} rows as of the cutoff, {b['loaded']} loaded / "
            f"{b['quarantined']} quarantined by this run"
            + (f" (delta on {b['base_run_id']})" if b["base_run_id"] else "")
            for b in result["input_batches"]),
    ]
    return "\n".join(lines)
