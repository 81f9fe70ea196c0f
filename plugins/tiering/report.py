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

The page is the Jinja2 template `tiering/templates/report.html.j2`, rendered with autoescape:
every value taken from the data is escaped by the template, none by hand. The charts are SVG
written by the template too; this module only computes their geometry (`Chart`: numbers, colours
and label texts), so the page needs no JavaScript. When the month is provisional (the column
`is_provisional` of marts.customer_tier_monthly, where the copy has it), a banner says so.

Every figure has a stable id and a `data-chart` attribute (tests check they render).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

import jinja2

from tiering.errors import TieringError
from tiering.export import open_published, require_month
from tiering.files import atomic_write
from tiering.publish import published_path
from tiering.runspec import parse_month

TIER_COLOURS = {"A": "#1f5fa8", "B": "#4f9bd9", "C": "#a9cbe8", "D": "#d9d9d9"}
GRADE_COLOURS = {"A": "#2e7d32", "B": "#8bc34a", "C": "#f9a825", "D": "#c62828", "unrated": "#9e9e9e"}
GRADES = ("A", "B", "C", "D", "unrated")
TEMPLATE = "report.html.j2"


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
    value_measure: str = "net_revenue"              # what was ranked (rules value.measure)


def _dicts(con, sql: str, params: list) -> list[dict]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


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


def _has_column(con, column: str) -> bool:
    """Whether marts.customer_tier_monthly of the copy has `column` (copies published by older
    code lack the newer columns)."""
    return bool(con.execute("""select count(*) from information_schema.columns
                               where table_schema = 'marts' and table_name = 'customer_tier_monthly'
                                 and column_name = ? and table_catalog = current_database()""",
                            [column]).fetchone()[0])


def _is_provisional(con, month: date) -> bool:
    """Whether the month's rows are provisional (computed before the month ended): the column
    is_provisional of marts.customer_tier_monthly; a copy without that column is final."""
    if not _has_column(con, "is_provisional"):
        return False
    return bool(con.execute("select coalesce(bool_or(is_provisional), false) from marts.customer_tier_monthly "
                            "where month = ?", [month]).fetchone()[0])


def _value_measure(con, month: date) -> str:
    """What the month's customers were ranked by (value_measure); net revenue in older copies."""
    if not _has_column(con, "value_measure"):
        return "net_revenue"
    row = con.execute("select min(value_measure) from marts.customer_tier_monthly where month = ?",
                      [month]).fetchone()
    return row[0] if row and row[0] else "net_revenue"


# the measure's name in the page's texts
MEASURE_WORDS = {"net_revenue": "revenue", "gross_margin": "gross margin"}


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
        data.provisional = _is_provisional(con, month)
        data.value_measure = _value_measure(con, month)
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
    finally:
        con.close()
    return data


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


# A chart is data: the template (macro `chart`) writes its SVG elements, escaping every text.
# Each mark is a dict with a `kind` (text, line, rect, circle, polyline, polygon, gradient) and
# the numbers, colours and texts the template's macro of that kind needs.

@dataclass
class Chart:
    id: str
    width: int
    height: int
    label: str
    marks: list[dict]


def _text(x: float, y: float, content, size: int = 12, anchor: str = "middle", weight: str = "normal",
          fill: str = "#333", rotate: bool = False) -> dict:
    """A label; rotate: turned -90 degrees about its own position (a vertical axis title)."""
    return {"kind": "text", "x": x, "y": y, "content": str(content), "size": size, "anchor": anchor,
            "weight": weight, "fill": fill, "rotate": rotate}


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, dash: str | None = None,
          width: float | None = None) -> dict:
    return {"kind": "line", "x1": x1, "y1": y1, "x2": x2, "y2": y2, "stroke": stroke, "dash": dash, "width": width}


def _rect(x: float, y: float, width: float, height: float, fill: str, title: str | None = None,
          stroke: str | None = None, stroke_width: float | None = None) -> dict:
    return {"kind": "rect", "x": x, "y": y, "w": width, "h": height, "fill": fill, "title": title,
            "stroke": stroke, "stroke_width": stroke_width}


def _circle(x: float, y: float, r: float, fill: str, title: str | None = None, stroke: str | None = None,
            stroke_width: float | None = None) -> dict:
    return {"kind": "circle", "x": x, "y": y, "r": r, "fill": fill, "title": title, "stroke": stroke,
            "stroke_width": stroke_width}


def bar_chart(chart_id: str, title: str, bars: list[tuple[str, float, str, str]], y_label: str,
              x_label: str, axis_format=_num, width: int = 520, height: int = 300) -> Chart:
    """Vertical bars: (category, value, colour, value label). Axes, gridlines and value labels."""
    left, right, top, bottom = 70, 16, 34, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = _nice_max(max([b[1] for b in bars] or [0]))
    marks = [_text(width / 2, 20, title, 14, weight="600")]
    for i in range(5):  # gridlines and y ticks
        value = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        marks.append(_line(left, y, left + plot_w, y, "#e3e3e3"))
        marks.append(_text(left - 6, y + 4, axis_format(value), 11, anchor="end", fill="#666"))
    slot = plot_w / max(len(bars), 1)
    bar_w = min(70, slot * 0.6)
    for i, (category, value, colour, label) in enumerate(bars):
        h = plot_h * (value / y_max) if y_max else 0
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h - h
        marks.append(_rect(x, y, bar_w, h, colour, title=f"{category}: {label}"))
        marks.append(_text(x + bar_w / 2, y - 5, label, 11, weight="600"))
        marks.append(_text(x + bar_w / 2, top + plot_h + 16, category, 12))
    marks.append(_line(left, top + plot_h, left + plot_w, top + plot_h, "#999"))
    marks.append(_line(left, top, left, top + plot_h, "#999"))
    marks.append(_text(left + plot_w / 2, height - 12, x_label, 12, fill="#555"))
    marks.append(_text(16, top + plot_h / 2, y_label, 12, fill="#555", rotate=True))
    return Chart(chart_id, width, height, title, marks)


def _thresholds(data: ReportData) -> list[tuple[str, str, float]]:
    """The rule thresholds to draw on the Pareto chart: (axis, label, share)."""
    value_rules = data.rules.get("value", {})
    word = MEASURE_WORDS.get(data.value_measure, data.value_measure)
    if data.rule_set == "pareto" and "pareto" in value_rules:
        p = value_rules["pareto"]
        return [("revenue", f"A threshold {_pct(p['a_share'], 0)} of {word}", p["a_share"]),
                ("revenue", f"B threshold {_pct(p['b_share'], 0)} of {word}", p["b_share"])]
    if data.rule_set == "count" and "count" in value_rules:
        c = value_rules["count"]
        return [("customers", f"A: top {_pct(c['a_share'], 0)} of customers", c["a_share"]),
                ("customers", f"B: next {_pct(c['b_share'], 0)}", c["a_share"] + c["b_share"])]
    return []


def pareto_chart(data: ReportData, width: int = 560, height: int = 420) -> Chart:
    """Cumulative revenue share against cumulative customer share, rule thresholds and cut points."""
    left, right, top, bottom = 64, 24, 34, 58
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(share: float) -> float:
        return left + plot_w * float(share)

    def py(share: float) -> float:
        return top + plot_h - plot_h * float(share)

    word = MEASURE_WORDS.get(data.value_measure, data.value_measure)
    marks = [_text(width / 2, 20, f"Pareto curve: {word} held by the top customers", 14, weight="600")]
    for i in range(0, 11, 2):
        s = i / 10
        marks.append(_line(px(s), top, px(s), top + plot_h, "#eee"))
        marks.append(_line(left, py(s), left + plot_w, py(s), "#eee"))
        marks.append(_text(px(s), top + plot_h + 16, _pct(s, 0), 11, fill="#666"))
        marks.append(_text(left - 6, py(s) + 4, _pct(s, 0), 11, anchor="end", fill="#666"))
    marks.append(_line(px(0), py(0), px(1), py(1), "#bbb", dash="4 4"))
    points = [(0.0, 0.0)] + [(r["cumulative_customer_share"], r["cumulative_revenue_share"]) for r in data.pareto]
    curve = [(px(x), py(y)) for x, y in points]
    marks.append({"kind": "polygon", "points": [(px(0), py(0)), *curve, (px(points[-1][0]), py(0))],
                  "fill": "#1f5fa8", "opacity": 0.08})
    marks.append({"kind": "polyline", "points": curve, "stroke": "#1f5fa8", "width": 2.5})
    for axis, label, share in _thresholds(data):
        if axis == "revenue":
            marks.append(_line(left, py(share), left + plot_w, py(share), "#c62828", dash="6 4"))
            marks.append(_text(left + 6, py(share) - 4, label, 11, anchor="start", fill="#c62828"))
        else:
            marks.append(_line(px(share), top, px(share), top + plot_h, "#c62828", dash="6 4"))
            marks.append(_text(px(share) + 4, top + 14, label, 11, anchor="start", fill="#c62828"))
    # the actual cut points: the last customer of each value tier but the lowest; the short label
    # sits by the point, the numbers in the empty area below the curve
    cuts = [c for c in data.cuts if c["value_tier"] != data.cuts[-1]["value_tier"]] if data.cuts else []
    for i, cut in enumerate(cuts):
        name = f'{cut["value_tier"]}|{chr(ord(cut["value_tier"]) + 1)}'
        x, y = px(cut["customer_share"]), py(cut["revenue_share"])
        marks.append(_line(x, y, x, top + plot_h, "#7f1d1d", dash="2 3"))
        marks.append(_circle(x, y, 5, "#c62828", title=f"{name} cut", stroke="#fff", stroke_width=1.5))
        marks.append(_text(x + 7, y + 15, name, 11, anchor="start", weight="600", fill="#7f1d1d"))
        label = f'{name} cut: top {_pct(cut["customer_share"])} of customers hold {_pct(cut["revenue_share"])}'
        marks.append(_text(left + plot_w - 8, py(0.12) + 16 * i, label, 11, anchor="end", weight="600",
                           fill="#7f1d1d"))
    marks.append(_rect(left, top, plot_w, plot_h, "none", stroke="#999"))
    marks.append(_text(left + plot_w / 2, height - 22, "cumulative share of customers (ranked by value, highest first)",
                       12, fill="#555"))
    marks.append(_text(16, top + plot_h / 2, f"cumulative share of {word}", 12, fill="#555", rotate=True))
    legend_y = height - 6
    marks.append(_line(left, legend_y - 4, left + 20, legend_y - 4, "#1f5fa8", width=2.5))
    marks.append(_text(left + 24, legend_y, "customers' revenue", 11, anchor="start"))
    marks.append(_line(left + 150, legend_y - 4, left + 170, legend_y - 4, "#bbb", dash="4 4"))
    marks.append(_text(left + 174, legend_y, "equal shares", 11, anchor="start"))
    marks.append(_circle(left + 272, legend_y - 4, 4, "#c62828"))
    marks.append(_text(left + 280, legend_y, "tier cut points", 11, anchor="start"))
    marks.append(_line(left + 375, legend_y - 4, left + 395, legend_y - 4, "#c62828", dash="6 4"))
    marks.append(_text(left + 399, legend_y, "rule thresholds", 11, anchor="start"))
    return Chart("chart-pareto", width, height, "Pareto curve", marks)


def migration_heatmap(data: ReportData, width: int = 560, height: int = 400) -> Chart:
    """Previous tier (rows, incl. new) x this month's tier (columns, incl. lapsed): customer counts."""
    present = {r["from_tier"] for r in data.migration} | {r["to_tier"] for r in data.migration}
    tiers = [t for t in "ABCD" if t in present or t in "ABC"]
    rows, cols = ["(new)", *tiers], [*tiers, "(lapsed)"]
    counts = {(r["from_tier"], r["to_tier"]): r for r in data.migration}
    peak = max([r["customer_count"] for r in data.migration] or [1])
    left, top, right, bottom = 96, 56, 16, 60
    cell_w, cell_h = (width - left - right) / len(cols), (height - top - bottom) / len(rows)
    marks = [_text(width / 2, 20, "Tier migration: previous month → this month (customers)", 14, weight="600"),
             _text(left + cell_w * len(cols) / 2, 42, "this month's final tier", 12, fill="#555")]
    for j, col in enumerate(cols):
        marks.append(_text(left + cell_w * (j + 0.5), top + cell_h * len(rows) + 16, col, 12, weight="600"))
    for i, row in enumerate(rows):
        marks.append(_text(left - 8, top + cell_h * (i + 0.5) + 4, row, 12, anchor="end", weight="600"))
        for j, col in enumerate(cols):
            cell = counts.get((row, col))
            n = cell["customer_count"] if cell else 0
            intensity = math.sqrt(n / peak) if n else 0
            fill = (f"rgb({int(255 - 224 * intensity)},{int(255 - 160 * intensity)},{int(255 - 87 * intensity)})"
                    if n else "#f7f7f7")
            x, y = left + cell_w * j, top + cell_h * i
            tip = f"{row} -> {col}: {n} customers" + (f", net revenue {_num(cell['net_revenue'])}" if cell else "")
            marks.append(_rect(x, y, cell_w, cell_h, fill, title=tip, stroke="#fff", stroke_width=2))
            marks.append(_text(x + cell_w / 2, y + cell_h / 2 + 5, _num(n) if n else "·", 13,
                               weight="600" if n else "normal", fill="#fff" if intensity > 0.55 else "#333"))
    marks.append(_text(18, top + cell_h * len(rows) / 2, "previous month's final tier", 12, fill="#555", rotate=True))
    # colour legend: 0 .. peak
    lx, ly = left, height - 22
    marks.append({"kind": "gradient", "id": "heat-scale", "start": "rgb(255,255,255)", "end": "rgb(31,95,168)"})
    marks.append(_rect(lx, ly, 160, 10, "url(#heat-scale)", stroke="#ccc"))
    marks.append(_text(lx - 4, ly + 9, "0", 11, anchor="end"))
    marks.append(_text(lx + 164, ly + 9, f"{peak:,} customers (colour ~ square root of count)", 11, anchor="start"))
    return Chart("chart-migration", width, height, "Tier migration heat map", marks)


# --------------------------------------------------------------------------------------------
# page
# --------------------------------------------------------------------------------------------

def _badge(tier) -> dict:
    """A table cell showing a tier as a coloured badge (the template's macro `cell`)."""
    if tier is None:
        return {"badge": None}
    text = "#222" if str(tier) in ("C", "D") else "#fff"
    return {"badge": str(tier), "background": TIER_COLOURS.get(str(tier), "#777"), "colour": text}


def _table(table_id: str, headers: list[tuple[str, bool]], rows: list[list], empty: str) -> dict:
    """headers: (label, numeric); a cell is a text (escaped by the template) or a _badge."""
    return {"id": table_id, "headers": [{"label": label, "numeric": numeric} for label, numeric in headers],
            "rows": [[cell if isinstance(cell, dict) else {"text": str(cell)} for cell in row] for row in rows],
            "empty": empty}


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The package's templates, autoescaped (whatever the file name), undefined names refused."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("tiering", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["n1"] = lambda value: f"{float(value):.1f}"
    return env


def page_context(data: ReportData, generated_at: str | None = None) -> dict:
    """What the template shows: texts and numbers only (no markup)."""
    currency = data.rules.get("reporting_currency", "")
    money = f"net revenue ({currency})" if currency else "net revenue"
    totals = data.totals
    thresholds = _thresholds(data)
    kpis = [(_num(totals["customers"]), "customers"), (_num(totals["active"]), "active (positive value)"),
            (_num(totals["net_revenue"]), f"{money}, trailing window"),
            (_num(totals["key_accounts"]), "key accounts"), (_num(totals["credit_holds"]), "on credit hold"),
            (_num(len(data.alerts)), "alerts")]
    tier_bars = [(r["final_tier"], TIER_COLOURS.get(r["final_tier"], "#777"), r) for r in data.summary]
    credit_by_grade = {r["credit_grade"]: r for r in data.credit}
    tables = {
        "summary": _table("table-tier-summary",
                          [("final tier", False), ("customers", True), ("share of customers", True), ("active", True),
                           ("key accounts", True), (money, True), ("revenue share", True)],
                          [[_badge(r["final_tier"]), _num(r["customer_count"]),
                            _pct(r["customer_count"] / totals["customers"] if totals["customers"] else 0),
                            _num(r["active_customer_count"]), _num(r["key_account_count"]), _num(r["net_revenue"]),
                            _pct(r["revenue_share"])] for r in data.summary], "no customers this month"),
        "credit": _table("table-credit",
                         [("credit grade", False), ("customers", True), ("in arrears", True),
                          (f"overdue balance ({currency})".replace(" ()", ""), True)],
                         [[g, _num(credit_by_grade[g]["customer_count"]), _num(credit_by_grade[g]["arrears"]),
                           _num(credit_by_grade[g]["overdue_balance"])] for g in GRADES if g in credit_by_grade],
                         "no credit data this month"),
        "key_accounts": _table("table-key-accounts",
                               [("rank", True), ("customer_id", False), ("customer_code", False), ("final tier", False),
                                ("value tier", False), ("credit", False), (money, True), ("share", True),
                                ("cumulative", True), ("movement", False)],
                               [[_num(r["value_rank"]), r["customer_id"], r["customer_code"], _badge(r["final_tier"]),
                                 _badge(r["value_tier"]), r["credit_grade"], _num(r["net_revenue"]),
                                 _pct(r["value_share"], 2), _pct(r["cumulative_share"]),
                                 str(r["movement"]) + (f" (from {r['previous_final_tier']})"
                                                       if r["movement"] in ("upgraded", "downgraded") else "")]
                                for r in data.key_accounts], "no key accounts this month"),
        "alerts": _table("table-alerts",
                         [("customer_id", False), ("reason", False), ("detail", False), ("final tier", False),
                          ("previous tier", False), ("key account", False), ("credit", False)],
                         [[r["customer_id"], r["reason_code"], r["detail"], _badge(r["final_tier"]),
                           _badge(r["previous_final_tier"]), "yes" if r["is_key_account"] else "no", r["credit_grade"]]
                          for r in data.alerts], "no alerts this month"),
    }
    charts = {
        "tier_customers": bar_chart(
            "chart-tier-customers", "Customers per final tier",
            [(tier, r["customer_count"], colour, _num(r["customer_count"])) for tier, colour, r in tier_bars],
            "customers", "final tier"),
        "tier_revenue": bar_chart(
            "chart-tier-revenue", "Revenue share per final tier",
            [(tier, r["revenue_share"], colour, _pct(r["revenue_share"])) for tier, colour, r in tier_bars],
            "share of net revenue", "final tier", axis_format=lambda v: _pct(v, 0)),
        "credit": bar_chart(
            "chart-credit-grades", "Customers per credit grade",
            [(g, credit_by_grade.get(g, {}).get("customer_count", 0), GRADE_COLOURS[g],
              _num(credit_by_grade.get(g, {}).get("customer_count", 0))) for g in GRADES],
            "customers", "credit grade (A excellent .. D high risk; unrated = no invoice due yet)"),
        "pareto": pareto_chart(data),
        "migration": migration_heatmap(data),
    }
    cut_text = "; ".join(f'{c["value_tier"]} ends at rank {c["last_rank"]:,} of {c["ranked_customers"]:,} '
                         f'({_pct(c["customer_share"])} of customers, {_pct(c["revenue_share"])} of '
                         f'{MEASURE_WORDS.get(data.value_measure, data.value_measure)})'
                         for c in data.cuts[:-1])
    return {
        "month_text": f"{data.month:%Y-%m}",
        "rule_versions": ", ".join(data.rule_versions),
        "run_ids": ", ".join(data.run_ids),
        "rule_set": data.rule_set or "mixed",
        "value_measure": MEASURE_WORDS.get(data.value_measure, data.value_measure),
        "source": str(data.source),
        "generated_at": generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "provisional": data.provisional,
        "kpis": kpis,
        "charts": charts,
        "tables": tables,
        "pareto_caption": "Thresholds: "
                          f"{', '.join(label for _, label, _ in thresholds) or 'rule thresholds not available'}."
                          f" Cut points: {cut_text or 'none'}.",
        "migration_caption": f"Upgraded {totals['upgraded']:,}, downgraded {totals['downgraded']:,}. "
                             "(new) = first month of the customer; (lapsed) = no positive value any more.",
        "key_account_count": f"{len(data.key_accounts):,}",
        "alert_count": f"{len(data.alerts):,}",
    }


def render_html(data: ReportData, generated_at: str | None = None) -> str:
    """The whole page as one string (no external resource, no script)."""
    return _environment().get_template(TEMPLATE).render(page_context(data, generated_at))


def write_report(warehouse: Path, month: date, out: Path) -> dict:
    """Render the month's report to `out` (written to a temporary file, then renamed)."""
    data = load_report_data(Path(warehouse), month)
    html = render_html(data)
    out = Path(out)
    size = atomic_write(out, html)
    return {"path": str(out), "bytes": size, "month": f"{month:%Y-%m}",
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
