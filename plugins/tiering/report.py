"""`tiering report`: one month as a self-contained HTML page.

    tiering report --month 2025-03 --out report.html

One file, nothing fetched from the network (no CDN, no web fonts, no script): the charts are
inline SVG drawn here from the published read-only copy BI reads. What is on the page:

- the header: month, rule version, run id, rule set and its thresholds;
- headline numbers: customers, active customers, net revenue, key accounts, credit holds, alerts;
- tier distribution: customers and revenue share per final tier (bars and a table);
- the Pareto curve: cumulative revenue share against cumulative customer share, with the rule
  thresholds (e.g. 80% / 95% of revenue) and the actual A|B and B|C cut points of the month;
- the migration matrix (previous tier -> tier, incl. new and lapsed) as a heat map;
- the credit grade distribution;
- the key accounts (customer_id and customer_code only: no personal data) and the alerts.

Every figure has a stable id and a `data-chart` attribute (tests check they render); every text
taken from the data is escaped.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from html import escape
from pathlib import Path

from tiering.errors import TieringError
from tiering.export import open_published, require_month
from tiering.publish import published_path
from tiering.runspec import parse_month

TIER_COLOURS = {"A": "#1f5fa8", "B": "#4f9bd9", "C": "#a9cbe8", "D": "#d9d9d9"}
GRADE_COLOURS = {"A": "#2e7d32", "B": "#8bc34a", "C": "#f9a825", "D": "#c62828", "unrated": "#9e9e9e"}
GRADES = ("A", "B", "C", "D", "unrated")
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

@dataclass
class ReportData:
    """Everything the page shows, read from the published copy for one month."""
    month: date
    source: Path
    rule_versions: list[str]
    run_ids: list[str]
    rule_set: str | None = None
    rules: dict = field(default_factory=dict)       # the rules content, when audit.rule_versions is readable
    summary: list[dict] = field(default_factory=list)
    pareto: list[dict] = field(default_factory=list)
    cuts: list[dict] = field(default_factory=list)  # actual tier boundaries on the Pareto curve
    migration: list[dict] = field(default_factory=list)
    credit: list[dict] = field(default_factory=list)
    key_accounts: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    provisional: bool = False                       # the month had not ended when it was computed


def _dicts(con, sql: str, params: list) -> list[dict]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _rules_content(con, warehouse: Path, rule_version: str) -> dict:
    """The rules content of a rule version: from the published copy if it carries audit tables,
    else from the live warehouse (read-only, one attempt: never wait for a running pipeline)."""
    import duckdb

    query = "select content from audit.rule_versions where rule_version = ?"
    has_audit = con.execute("""select count(*) from information_schema.tables
                               where table_schema = 'audit' and table_name = 'rule_versions'""").fetchone()[0]
    try:
        if has_audit:
            row = con.execute(query, [rule_version]).fetchone()
        elif Path(warehouse).exists():
            live = duckdb.connect(str(warehouse), read_only=True)
            try:
                row = live.execute(query, [rule_version]).fetchone()
            finally:
                live.close()
        else:
            row = None
    except duckdb.Error:
        row = None  # the live file is busy or has no audit schema: thresholds come from the rows only
    return json.loads(row[0]) if row and row[0] else {}


def load_report_data(warehouse: Path, month: date) -> ReportData:
    """Read the month's marts from the published copy; TieringError if the month is absent."""
    source = published_path(warehouse)
    con = open_published(warehouse)
    try:
        rule_versions, run_ids = require_month(con, month, source)
        data = ReportData(month=month, source=source, rule_versions=rule_versions, run_ids=run_ids)
        rule_sets = [r[0] for r in con.execute(
            "select distinct rule_set from marts.customer_tier_monthly where month = ? order by 1",
            [month]).fetchall()]
        data.rule_set = rule_sets[0] if len(rule_sets) == 1 else None
        data.rules = _rules_content(con, Path(warehouse), rule_versions[-1])
        data.summary = _dicts(con, """
            select final_tier, customer_count, active_customer_count, key_account_count,
                   cast(net_revenue as double) as net_revenue, revenue_share
            from marts.tier_summary_monthly where month = ? order by final_tier""", [month])
        data.pareto = _dicts(con, """
            select customer_percentile, cumulative_customer_share, cumulative_revenue_share
            from marts.pareto_curve_monthly where month = ? order by customer_percentile""", [month])
        # where each value tier ends on the curve: its last ranked customer
        data.cuts = _dicts(con, """
            with ranked as (
                select value_tier, value_rank, cumulative_share, count(*) over () as ranked_customers
                from marts.customer_tier_monthly
                where month = ? and value_rank is not null
            )
            select value_tier, max(value_rank) as last_rank, max(ranked_customers) as ranked_customers,
                   max(value_rank) / max(ranked_customers) as customer_share,
                   max(cumulative_share) as revenue_share
            from ranked group by value_tier order by value_tier""", [month])
        data.migration = _dicts(con, """
            select from_tier, to_tier, sum(customer_count) as customer_count,
                   cast(sum(net_revenue) as double) as net_revenue
            from marts.tier_migration_monthly where month = ? group by from_tier, to_tier""", [month])
        data.credit = _dicts(con, """
            select credit_grade, count(*) as customer_count, count(case when arrears_flag then 1 end) as arrears,
                   cast(sum(overdue_balance) as double) as overdue_balance
            from marts.customer_credit_monthly where month = ? group by credit_grade""", [month])
        data.key_accounts = _dicts(con, """
            select value_rank, customer_id, customer_code, final_tier, value_tier, credit_grade,
                   cast(net_revenue as double) as net_revenue, value_share, cumulative_share,
                   movement, previous_final_tier
            from marts.customer_tier_monthly
            where month = ? and is_key_account order by value_rank""", [month])
        data.alerts = _dicts(con, """
            select customer_id, reason_code, detail, final_tier, previous_final_tier, is_key_account,
                   credit_grade
            from marts.tier_alerts_monthly where month = ? order by customer_id, reason_code""", [month])
        data.totals = _dicts(con, """
            select count(*) as customers, count(case when is_active then 1 end) as active,
                   count(case when is_key_account then 1 end) as key_accounts,
                   count(case when credit_hold then 1 end) as credit_holds,
                   count(case when movement = 'upgraded' then 1 end) as upgraded,
                   count(case when movement = 'downgraded' then 1 end) as downgraded,
                   cast(sum(net_revenue) as double) as net_revenue
            from marts.customer_tier_monthly where month = ?""", [month])[0]
        data.provisional = _provisional(con, month)
    finally:
        con.close()
    return data


# --- provisional month banner (issue 32): one self-contained block, kept apart from the template ---
def _provisional(con, month: date) -> bool:
    """Whether the month's marts come from a provisional run (a copy built before the column: no)."""
    import duckdb

    try:
        row = con.execute("select bool_or(is_provisional) from marts.tier_summary_monthly where month = ?",
                          [month]).fetchone()
    except duckdb.Error:
        return False
    return bool(row and row[0])


def _provisional_banner(data: ReportData) -> str:
    if not data.provisional:
        return ""
    return (f'<div id="provisional-banner" role="alert" style="background:#fff3cd;color:#664d03;padding:12px 32px;'
            f'font-weight:600">PROVISIONAL: {data.month:%Y-%m} had not ended when it was computed; these figures '
            f'can still change. Run the month again after it ends for the final figures.</div>\n')
# --- end of the provisional month banner ---


# --------------------------------------------------------------------------------------------
# formatting and SVG helpers
# --------------------------------------------------------------------------------------------

def _num(value, digits: int = 0) -> str:
    return "-" if value is None else f"{float(value):,.{digits}f}"


def _pct(value, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value) * 100:.{digits}f}%"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above value (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _text(x: float, y: float, content: str, size: int = 12, anchor: str = "middle", weight: str = "normal",
          fill: str = "#333", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}"{extra}>{escape(str(content))}</text>')


def _svg(chart_id: str, width: int, height: int, label: str, body: list[str]) -> str:
    return (f'<svg id="{chart_id}-svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
            f'font-family="{escape(FONT)}">' + "".join(body) + "</svg>")


def bar_chart(chart_id: str, title: str, bars: list[tuple[str, float, str, str]], y_label: str,
              x_label: str, axis_format=_num, width: int = 520, height: int = 300) -> str:
    """Vertical bars: (category, value, colour, value label). Axes, gridlines and value labels."""
    left, right, top, bottom = 70, 16, 34, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = _nice_max(max([b[1] for b in bars] or [0]))
    body = [_text(width / 2, 20, title, 14, weight="600")]
    for i in range(5):  # gridlines and y ticks
        value = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        body.append(_text(left - 6, y + 4, axis_format(value), 11, anchor="end", fill="#666"))
    slot = plot_w / max(len(bars), 1)
    bar_w = min(70, slot * 0.6)
    for i, (category, value, colour, label) in enumerate(bars):
        h = plot_h * (value / y_max) if y_max else 0
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h - h
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
                    f'<title>{escape(f"{category}: {label}")}</title></rect>')
        body.append(_text(x + bar_w / 2, y - 5, label, 11, weight="600"))
        body.append(_text(x + bar_w / 2, top + plot_h + 16, category, 12))
    body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#999"/>')
    body.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#999"/>')
    body.append(_text(left + plot_w / 2, height - 12, x_label, 12, fill="#555"))
    body.append(_text(16, top + plot_h / 2, y_label, 12, fill="#555",
                      extra=f' transform="rotate(-90 16 {top + plot_h / 2:.1f})"'))
    return _svg(chart_id, width, height, title, body)


def _thresholds(data: ReportData) -> list[tuple[str, str, float]]:
    """The rule thresholds to draw on the Pareto chart: (axis, label, share)."""
    value_rules = data.rules.get("value", {})
    if data.rule_set == "pareto" and "pareto" in value_rules:
        p = value_rules["pareto"]
        return [("revenue", f"A threshold {_pct(p['a_share'], 0)} of revenue", p["a_share"]),
                ("revenue", f"B threshold {_pct(p['b_share'], 0)} of revenue", p["b_share"])]
    if data.rule_set == "count" and "count" in value_rules:
        c = value_rules["count"]
        return [("customers", f"A: top {_pct(c['a_share'], 0)} of customers", c["a_share"]),
                ("customers", f"B: next {_pct(c['b_share'], 0)}", c["a_share"] + c["b_share"])]
    return []


def pareto_chart(data: ReportData, width: int = 560, height: int = 420) -> str:
    """Cumulative revenue share against cumulative customer share, rule thresholds and cut points."""
    left, right, top, bottom = 64, 24, 34, 58
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(share: float) -> float:
        return left + plot_w * float(share)

    def py(share: float) -> float:
        return top + plot_h - plot_h * float(share)

    body = [_text(width / 2, 20, "Pareto curve: revenue held by the top customers", 14, weight="600")]
    for i in range(0, 11, 2):
        s = i / 10
        body.append(f'<line x1="{px(s):.1f}" x2="{px(s):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>')
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(s):.1f}" y2="{py(s):.1f}" stroke="#eee"/>')
        body.append(_text(px(s), top + plot_h + 16, _pct(s, 0), 11, fill="#666"))
        body.append(_text(left - 6, py(s) + 4, _pct(s, 0), 11, anchor="end", fill="#666"))
    body.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#bbb" stroke-dasharray="4 4"/>')
    points = [(0.0, 0.0)] + [(r["cumulative_customer_share"], r["cumulative_revenue_share"]) for r in data.pareto]
    path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    body.append(f'<polygon points="{px(0):.1f},{py(0):.1f} {path} {px(points[-1][0]):.1f},{py(0):.1f}" '
                f'fill="#1f5fa8" fill-opacity="0.08"/>')
    body.append(f'<polyline points="{path}" fill="none" stroke="#1f5fa8" stroke-width="2.5"/>')
    for axis, label, share in _thresholds(data):
        if axis == "revenue":
            body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(share):.1f}" y2="{py(share):.1f}" '
                        f'stroke="#c62828" stroke-dasharray="6 4"/>')
            body.append(_text(left + 6, py(share) - 4, label, 11, anchor="start", fill="#c62828"))
        else:
            body.append(f'<line x1="{px(share):.1f}" x2="{px(share):.1f}" y1="{top}" y2="{top + plot_h}" '
                        f'stroke="#c62828" stroke-dasharray="6 4"/>')
            body.append(_text(px(share) + 4, top + 14, label, 11, anchor="start", fill="#c62828"))
    # the actual cut points: the last customer of each value tier but the lowest; the short label
    # sits by the point, the numbers in the empty area below the curve
    cuts = [c for c in data.cuts if c["value_tier"] != data.cuts[-1]["value_tier"]] if data.cuts else []
    for i, cut in enumerate(cuts):
        name = f'{cut["value_tier"]}|{chr(ord(cut["value_tier"]) + 1)}'
        x, y = px(cut["customer_share"]), py(cut["revenue_share"])
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y:.1f}" y2="{top + plot_h}" stroke="#7f1d1d" '
                    f'stroke-dasharray="2 3"/>')
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#c62828" stroke="#fff" stroke-width="1.5">'
                    f'<title>{escape(name)} cut</title></circle>')
        body.append(_text(x + 7, y + 15, name, 11, anchor="start", weight="600", fill="#7f1d1d"))
        label = f'{name} cut: top {_pct(cut["customer_share"])} of customers hold {_pct(cut["revenue_share"])}'
        body.append(_text(left + plot_w - 8, py(0.12) + 16 * i, label, 11, anchor="end", weight="600",
                          fill="#7f1d1d"))
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    body.append(_text(left + plot_w / 2, height - 22, "cumulative share of customers (ranked by value, highest first)",
                      12, fill="#555"))
    body.append(_text(16, top + plot_h / 2, "cumulative share of revenue", 12, fill="#555",
                      extra=f' transform="rotate(-90 16 {top + plot_h / 2:.1f})"'))
    legend_y = height - 6
    body.append(f'<line x1="{left}" x2="{left + 20}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="#1f5fa8" stroke-width="2.5"/>')
    body.append(_text(left + 24, legend_y, "customers' revenue", 11, anchor="start"))
    body.append(f'<line x1="{left + 150}" x2="{left + 170}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="#bbb" stroke-dasharray="4 4"/>')
    body.append(_text(left + 174, legend_y, "equal shares", 11, anchor="start"))
    body.append(f'<circle cx="{left + 272}" cy="{legend_y - 4}" r="4" fill="#c62828"/>')
    body.append(_text(left + 280, legend_y, "tier cut points", 11, anchor="start"))
    body.append(f'<line x1="{left + 375}" x2="{left + 395}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="#c62828" stroke-dasharray="6 4"/>')
    body.append(_text(left + 399, legend_y, "rule thresholds", 11, anchor="start"))
    return _svg("chart-pareto", width, height, "Pareto curve", body)


def migration_heatmap(data: ReportData, width: int = 560, height: int = 400) -> str:
    """Previous tier (rows, incl. new) x this month's tier (columns, incl. lapsed): customer counts."""
    present = {r["from_tier"] for r in data.migration} | {r["to_tier"] for r in data.migration}
    tiers = [t for t in "ABCD" if t in present or t in "ABC"]
    rows, cols = ["(new)", *tiers], [*tiers, "(lapsed)"]
    counts = {(r["from_tier"], r["to_tier"]): r for r in data.migration}
    peak = max([r["customer_count"] for r in data.migration] or [1])
    left, top, right, bottom = 96, 56, 16, 60
    cell_w, cell_h = (width - left - right) / len(cols), (height - top - bottom) / len(rows)
    body = [_text(width / 2, 20, "Tier migration: previous month → this month (customers)", 14, weight="600"),
            _text(left + cell_w * len(cols) / 2, 42, "this month's final tier", 12, fill="#555")]
    for j, col in enumerate(cols):
        body.append(_text(left + cell_w * (j + 0.5), top + cell_h * len(rows) + 16, col, 12, weight="600"))
    for i, row in enumerate(rows):
        body.append(_text(left - 8, top + cell_h * (i + 0.5) + 4, row, 12, anchor="end", weight="600"))
        for j, col in enumerate(cols):
            cell = counts.get((row, col))
            n = cell["customer_count"] if cell else 0
            intensity = math.sqrt(n / peak) if n else 0
            fill = (f"rgb({int(255 - 224 * intensity)},{int(255 - 160 * intensity)},{int(255 - 87 * intensity)})"
                    if n else "#f7f7f7")
            x, y = left + cell_w * j, top + cell_h * i
            tip = f"{row} -> {col}: {n} customers" + (f", net revenue {_num(cell['net_revenue'])}" if cell else "")
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell_w:.1f}" height="{cell_h:.1f}" fill="{fill}" '
                        f'stroke="#fff" stroke-width="2"><title>{escape(tip)}</title></rect>')
            body.append(_text(x + cell_w / 2, y + cell_h / 2 + 5, _num(n) if n else "·", 13,
                              weight="600" if n else "normal", fill="#fff" if intensity > 0.55 else "#333"))
    body.append(_text(18, top + cell_h * len(rows) / 2, "previous month's final tier", 12, fill="#555",
                      extra=f' transform="rotate(-90 18 {top + cell_h * len(rows) / 2:.1f})"'))
    # colour legend: 0 .. peak
    lx, ly = left, height - 22
    body.append('<defs><linearGradient id="heat-scale" x1="0" x2="1" y1="0" y2="0">'
                '<stop offset="0" stop-color="rgb(255,255,255)"/><stop offset="1" stop-color="rgb(31,95,168)"/>'
                '</linearGradient></defs>')
    body.append(f'<rect x="{lx}" y="{ly}" width="160" height="10" fill="url(#heat-scale)" stroke="#ccc"/>')
    body.append(_text(lx - 4, ly + 9, "0", 11, anchor="end"))
    body.append(_text(lx + 164, ly + 9, f"{peak:,} customers (colour ~ square root of count)", 11, anchor="start"))
    return _svg("chart-migration", width, height, "Tier migration heat map", body)


# --------------------------------------------------------------------------------------------
# page
# --------------------------------------------------------------------------------------------

CSS = f"""
* {{ box-sizing: border-box; }}
body {{ margin: 0; background: #f4f6f9; color: #222; font-family: {FONT}; font-size: 14px; }}
header {{ background: #14365d; color: #fff; padding: 20px 32px; }}
header h1 {{ margin: 0 0 6px; font-size: 24px; }}
header p {{ margin: 2px 0; color: #d5e2f1; font-size: 13px; }}
header code {{ color: #fff; }}
main {{ max-width: 1200px; margin: 0 auto; padding: 20px 24px 40px; }}
section {{ background: #fff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.08); padding: 16px 20px;
          margin-bottom: 18px; }}
h2 {{ font-size: 17px; margin: 0 0 10px; color: #14365d; }}
.kpis {{ display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; margin-bottom: 18px; }}
.kpi {{ background: #fff; border-radius: 8px; padding: 12px 14px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }}
.kpi b {{ display: block; font-size: 22px; color: #14365d; }}
.kpi span {{ color: #666; font-size: 12px; }}
.row {{ display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }}
figure {{ margin: 0; }}
figure svg {{ max-width: 100%; height: auto; display: block; }}
figcaption {{ color: #666; font-size: 12px; margin-top: 4px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ padding: 5px 8px; border-bottom: 1px solid #eee; text-align: left; }}
th {{ background: #f0f3f7; font-weight: 600; }}
td.n, th.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.scroll {{ max-height: 420px; overflow-y: auto; }}
.tier {{ display: inline-block; min-width: 22px; text-align: center; border-radius: 4px; color: #fff;
         font-weight: 600; padding: 0 4px; }}
.muted {{ color: #777; }}
footer {{ color: #777; font-size: 12px; text-align: center; padding: 10px; }}
"""


def _tier_badge(tier) -> str:
    if tier is None:
        return '<span class="muted">-</span>'
    colour = TIER_COLOURS.get(str(tier), "#777")
    text = "#222" if str(tier) in ("C", "D") else "#fff"
    return f'<span class="tier" style="background:{colour};color:{text}">{escape(str(tier))}</span>'


def _table(headers: list[tuple[str, bool]], rows: list[list[str]], table_id: str, empty: str) -> str:
    """headers: (label, numeric); cells are already-escaped HTML."""
    if not rows:
        return f'<p id="{table_id}" class="muted">{escape(empty)}</p>'
    head = "".join(f'<th class="{"n" if numeric else ""}">{escape(label)}</th>' for label, numeric in headers)
    body = "".join("<tr>" + "".join(f'<td class="{"n" if headers[i][1] else ""}">{cell}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figure(chart_id: str, kind: str, svg: str, caption: str) -> str:
    return (f'<figure id="{chart_id}" data-chart="{kind}">{svg}'
            f'<figcaption>{escape(caption)}</figcaption></figure>')


def render_html(data: ReportData, generated_at: str | None = None) -> str:
    """The whole page as one string (no external resource)."""
    month_text = f"{data.month:%Y-%m}"
    currency = data.rules.get("reporting_currency", "")
    money = f"net revenue ({currency})" if currency else "net revenue"
    totals = data.totals
    generated_at = generated_at or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    thresholds = _thresholds(data)

    kpis = [(_num(totals["customers"]), "customers"), (_num(totals["active"]), "active (positive value)"),
            (_num(totals["net_revenue"]), f"{money}, trailing window"),
            (_num(totals["key_accounts"]), "key accounts"), (_num(totals["credit_holds"]), "on credit hold"),
            (_num(len(data.alerts)), "alerts")]
    kpi_html = "".join(f'<div class="kpi"><b>{escape(v)}</b><span>{escape(label)}</span></div>' for v, label in kpis)

    customers_chart = bar_chart(
        "chart-tier-customers", "Customers per final tier",
        [(r["final_tier"], r["customer_count"], TIER_COLOURS.get(r["final_tier"], "#777"), _num(r["customer_count"]))
         for r in data.summary], "customers", "final tier")
    revenue_chart = bar_chart(
        "chart-tier-revenue", "Revenue share per final tier",
        [(r["final_tier"], r["revenue_share"], TIER_COLOURS.get(r["final_tier"], "#777"), _pct(r["revenue_share"]))
         for r in data.summary], "share of net revenue", "final tier", axis_format=lambda v: _pct(v, 0))
    summary_table = _table(
        [("final tier", False), ("customers", True), ("share of customers", True), ("active", True),
         ("key accounts", True), (money, True), ("revenue share", True)],
        [[_tier_badge(r["final_tier"]), _num(r["customer_count"]),
          _pct(r["customer_count"] / totals["customers"] if totals["customers"] else 0),
          _num(r["active_customer_count"]), _num(r["key_account_count"]), _num(r["net_revenue"]),
          _pct(r["revenue_share"])] for r in data.summary], "table-tier-summary", "no customers this month")

    credit_by_grade = {r["credit_grade"]: r for r in data.credit}
    credit_chart = bar_chart(
        "chart-credit-grades", "Customers per credit grade",
        [(g, credit_by_grade.get(g, {}).get("customer_count", 0), GRADE_COLOURS[g],
          _num(credit_by_grade.get(g, {}).get("customer_count", 0))) for g in GRADES],
        "customers", "credit grade (A excellent .. D high risk; unrated = no invoice due yet)")
    credit_table = _table(
        [("credit grade", False), ("customers", True), ("in arrears", True), (f"overdue balance ({currency})".replace(" ()", ""), True)],
        [[escape(g), _num(credit_by_grade[g]["customer_count"]), _num(credit_by_grade[g]["arrears"]),
          _num(credit_by_grade[g]["overdue_balance"])] for g in GRADES if g in credit_by_grade],
        "table-credit", "no credit data this month")

    key_table = _table(
        [("rank", True), ("customer_id", False), ("customer_code", False), ("final tier", False),
         ("value tier", False), ("credit", False), (money, True), ("share", True), ("cumulative", True),
         ("movement", False)],
        [[_num(r["value_rank"]), escape(str(r["customer_id"])), escape(str(r["customer_code"])),
          _tier_badge(r["final_tier"]), _tier_badge(r["value_tier"]), escape(str(r["credit_grade"])),
          _num(r["net_revenue"]), _pct(r["value_share"], 2), _pct(r["cumulative_share"]),
          escape(str(r["movement"]) + (f" (from {r['previous_final_tier']})"
                                       if r["movement"] in ("upgraded", "downgraded") else ""))]
         for r in data.key_accounts], "table-key-accounts", "no key accounts this month")
    alerts_table = _table(
        [("customer_id", False), ("reason", False), ("detail", False), ("final tier", False),
         ("previous tier", False), ("key account", False), ("credit", False)],
        [[escape(str(r["customer_id"])), escape(str(r["reason_code"])), escape(str(r["detail"])),
          _tier_badge(r["final_tier"]), _tier_badge(r["previous_final_tier"]),
          "yes" if r["is_key_account"] else "no", escape(str(r["credit_grade"]))] for r in data.alerts],
        "table-alerts", "no alerts this month")

    cut_text = "; ".join(f'{c["value_tier"]} ends at rank {c["last_rank"]:,} of {c["ranked_customers"]:,} '
                         f'({_pct(c["customer_share"])} of customers, {_pct(c["revenue_share"])} of revenue)'
                         for c in data.cuts[:-1])
    threshold_text = ", ".join(label for _, label, _ in thresholds) or "rule thresholds not available"
    rule_set = data.rule_set or "mixed"

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Customer tiering {escape(month_text)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
  <h1 id="report-title">Customer tiering report &middot; {escape(month_text)}</h1>
  <p>Rules <code id="rule-version">{escape(", ".join(data.rule_versions))}</code> (rule set {escape(rule_set)})
     &middot; run <code id="run-id">{escape(", ".join(data.run_ids))}</code></p>
  <p>Source: {escape(str(data.source))} &middot; generated {escape(generated_at)}</p>
</header>
{_provisional_banner(data)}<main>
  <div class="kpis" id="kpis">{kpi_html}</div>
  <section id="tier-distribution">
    <h2>Tier distribution</h2>
    <div class="row">
      {_figure("fig-tier-customers", "tier-customers", customers_chart, "Customers per final tier (after the credit matrix).")}
      {_figure("fig-tier-revenue", "tier-revenue", revenue_chart, "Share of the month's net revenue (trailing value window) per final tier.")}
    </div>
    {summary_table}
  </section>
  <div class="row">
    <section id="pareto">
      <h2>Pareto curve</h2>
      {_figure("fig-pareto", "pareto", pareto_chart(data), f"Thresholds: {threshold_text}. Cut points: {cut_text or 'none'}.")}
    </section>
    <section id="migration">
      <h2>Migration matrix</h2>
      {_figure("fig-migration", "migration", migration_heatmap(data),
               f"Upgraded {totals['upgraded']:,}, downgraded {totals['downgraded']:,}. "
               "(new) = first month of the customer; (lapsed) = no positive value any more.")}
    </section>
  </div>
  <section id="credit">
    <h2>Credit grades</h2>
    <div class="row">
      {_figure("fig-credit", "credit-grades", credit_chart, "Credit grade from the payment history.")}
      <div>{credit_table}</div>
    </div>
  </section>
  <section id="key-accounts">
    <h2>Key accounts ({len(data.key_accounts):,})</h2>
    <div class="scroll">{key_table}</div>
  </section>
  <section id="alerts">
    <h2>Alerts ({len(data.alerts):,})</h2>
    <div class="scroll">{alerts_table}</div>
  </section>
</main>
<footer>Customer tiering &middot; marts from the published read-only copy &middot; no personal data on this page</footer>
</body>
</html>
"""


def write_report(warehouse: Path, month: date, out: Path) -> dict:
    """Render the month's report to `out` (written to a temporary file, then renamed)."""
    data = load_report_data(Path(warehouse), month)
    html = render_html(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, out)
    return {"path": str(out), "bytes": len(html.encode()), "month": f"{month:%Y-%m}",
            "rule_versions": data.rule_versions, "run_ids": data.run_ids,
            "key_accounts": len(data.key_accounts), "alerts": len(data.alerts)}


def cli_report(args) -> None:
    """`tiering report --month M --out FILE.html [--warehouse FILE]`."""
    month = parse_month(args.month)
    if Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise TieringError(f"--out {args.out}: the report is an HTML file; give a name ending in .html")
    started = time.monotonic()
    result = write_report(Path(args.warehouse), month, Path(args.out))
    print(f"report {result['month']} (rules {', '.join(result['rule_versions'])}, run {', '.join(result['run_ids'])}): "
          f"{result['path']} ({result['bytes'] / 1024:.0f} KB; {result['key_accounts']} key accounts, "
          f"{result['alerts']} alerts) in {time.monotonic() - started:.1f} s")


# --------------------------------------------------------------------------------------------
# headless Chromium: the screenshot for the docs (`make report-screenshot`) and the browser test
# --------------------------------------------------------------------------------------------

CHROMIUM = Path(os.environ.get("TIERING_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TIERING_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--force-device-scale-factor=1")


def chromium_driver(profile_dir: Path, width: int = 1200, height: int = 900):
    """A selenium WebDriver on the Debian headless Chromium with a fresh profile in `profile_dir`,
    capturing the browser console (goog:loggingPrefs). The caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise TieringError(f"headless Chromium not found ({CHROMIUM}, {CHROMEDRIVER}); "
                           "install it with `make browser` (Debian packages chromium, chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def screenshot(html: Path, png: Path, width: int = 1200, max_height: int = 1700) -> dict:
    """Render `html` in headless Chromium and save the top of the page (up to max_height px) as PNG.

    Returns the page's console entries and the chart sizes (what the browser test asserts)."""
    import base64
    import shutil
    import tempfile

    profile = Path(tempfile.mkdtemp(prefix="tiering-chromium-"))
    driver = chromium_driver(profile, width=width, height=900)
    try:
        driver.get(Path(html).resolve().as_uri())
        page_height = driver.execute_script("return document.documentElement.scrollHeight")
        height = min(int(page_height), max_height)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        charts = driver.execute_script("""
            return Array.from(document.querySelectorAll('[data-chart]')).map(function (el) {
                var box = el.querySelector('svg').getBoundingClientRect();
                return {id: el.id, chart: el.dataset.chart, width: box.width, height: box.height,
                        marks: el.querySelectorAll('rect, polyline, circle').length};
            });""")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        logs = driver.get_log("browser")
        title = driver.title
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(base64.b64decode(shot["data"]))
    return {"png": str(png), "bytes": png.stat().st_size, "width": width, "height": height,
            "page_height": page_height, "charts": charts, "console": logs, "title": title}


def _main(argv: list[str] | None = None) -> int:
    """`python -m tiering.report screenshot FILE.html FILE.png [--width N]` (used by make)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tiering.report")
    sub = parser.add_subparsers(dest="command", required=True)
    shot = sub.add_parser("screenshot", help="render a report in headless Chromium and save a PNG")
    shot.add_argument("html", type=Path)
    shot.add_argument("png", type=Path)
    shot.add_argument("--width", type=int, default=1200)
    shot.add_argument("--max-height", type=int, default=1700)
    args = parser.parse_args(argv)
    try:
        result = screenshot(args.html, args.png, args.width, args.max_height)
    except TieringError as exc:
        print(f"tiering: error: {exc}", file=sys.stderr)
        return 1
    severe = [e for e in result["console"] if e.get("level") == "SEVERE"]
    print(f"screenshot {result['png']}: {result['width']}x{result['height']} px, {result['bytes'] / 1024:.0f} KB; "
          f"{len(result['charts'])} charts; {len(severe)} console errors")
    return 1 if severe else 0


if __name__ == "__main__":
    raise SystemExit(_main())
