"""`tiering report`: the month's HTML page, from the session's demo warehouse (read only).

The page's numbers are checked against the published copy; the page is rendered for real in
headless Chromium (Debian chromium + chromium-driver, `make browser`), which must show every chart
with a non-zero size and log no console error."""
from __future__ import annotations

import dataclasses
import re
import struct
from datetime import date
from pathlib import Path

import duckdb
import pytest
from markupsafe import escape  # the template's autoescape: ' is &#39;

from tiering import report
from tiering.cli import main
from tiering.publish import published_path

MONTH = "2024-04"
MONTH_DATE = date(2024, 4, 1)
CHARTS = {"fig-tier-customers": "tier-customers", "fig-tier-revenue": "tier-revenue", "fig-pareto": "pareto",
          "fig-migration": "migration", "fig-credit": "credit-grades"}


def _rows(warehouse: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(published_path(warehouse)), read_only=True)
    try:
        return con.execute(sql, [MONTH_DATE]).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def page(demo_warehouse, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / f"report-{MONTH}.html"
    assert main(["report", "--month", MONTH, "--out", str(out), "--warehouse", str(demo_warehouse)]) == 0
    return out


@pytest.fixture(scope="module")
def html(page) -> str:
    return page.read_text(encoding="utf-8")


def test_header_names_month_rules_and_run(demo_warehouse, html):
    (rule_version, run_id), = _rows(demo_warehouse, "select distinct rule_version, run_id "
                                                    "from marts.customer_tier_monthly where month = ?")
    assert f"<title>Customer tiering {MONTH}</title>" in html
    assert f'<code id="rule-version">{rule_version}</code>' in html
    assert f'<code id="run-id">{run_id}</code>' in html


def test_self_contained(html):
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)   # no external resource
    assert "@import" not in html and "url(http" not in html
    assert "http://www.w3.org/2000/svg" in html and html.count("http") == html.count("http://www.w3.org/2000/svg")
    for chart_id, kind in CHARTS.items():
        assert f'id="{chart_id}" data-chart="{kind}"' in html


def test_tier_table_matches_the_summary_mart(demo_warehouse, html):
    table = html.split('id="table-tier-summary"')[1].split("</table>")[0]
    summary = _rows(demo_warehouse, "select final_tier, customer_count, net_revenue, revenue_share "
                                    "from marts.tier_summary_monthly where month = ? order by final_tier")
    assert len(summary) >= 3
    for tier, customers, revenue, share in summary:
        assert re.search(rf">{tier}</span></td><td class=\"n\">{customers:,}</td>", table)
        assert f"{float(revenue):,.0f}" in table and f"{share * 100:.1f}%" in table
    # the bars carry the same numbers
    for tier, customers, _, share in summary:
        assert escape(f"{tier}: {customers:,}") in html and escape(f"{tier}: {share * 100:.1f}%") in html


def test_pareto_marks_rule_thresholds_and_actual_cut_points(demo_warehouse, html):
    # rules content comes from audit.rule_versions of the (live) demo warehouse: pareto 80% / 95%
    assert "A threshold 80% of revenue" in html and "B threshold 95% of revenue" in html
    a_count, a_share = _rows(demo_warehouse, """
        select count(*), max(cumulative_share) from marts.customer_tier_monthly
        where month = ? and value_tier = 'A' and value_rank is not null""")[0]
    ranked, = _rows(demo_warehouse, "select count(*) from marts.customer_tier_monthly "
                                    "where month = ? and value_rank is not null")[0]
    assert a_share >= 0.80
    assert f"A ends at rank {a_count:,} of {ranked:,}" in html
    assert f"A|B cut: top {a_count / ranked * 100:.1f}% of customers hold {a_share * 100:.1f}%" in html


def test_migration_heatmap_cells(demo_warehouse, html):
    cells = _rows(demo_warehouse, """select from_tier, to_tier, sum(customer_count) from marts.tier_migration_monthly
                                     where month = ? group by all""")
    customers, = _rows(demo_warehouse, "select count(*) from marts.customer_tier_monthly where month = ?")[0]
    assert sum(n for _, _, n in cells) == customers
    svg = html.split('id="chart-migration-svg"')[1].split("</svg>")[0]
    for from_tier, to_tier, n in cells:
        assert escape(f"{from_tier} -> {to_tier}: {n} customers") in svg
    for label in ("(new)", "(lapsed)", "previous month&#39;s final tier", "this month&#39;s final tier"):
        assert label in svg


def test_key_accounts_and_alerts_tables(demo_warehouse, demo_source, html):
    keys = [r[0] for r in _rows(demo_warehouse, "select customer_code from marts.customer_tier_monthly "
                                                "where month = ? and is_key_account order by value_rank")]
    table = html.split('id="table-key-accounts"')[1].split("</table>")[0]
    assert keys and table.count("<tr>") == len(keys) + 1
    assert [c for c in re.findall(r"<td class=\"\">(\d\d-\d\d-\d-\d{7}-\d)</td>", table)] == keys
    alerts = _rows(demo_warehouse, "select customer_id, reason_code from marts.tier_alerts_monthly where month = ?")
    assert f"Alerts ({len(alerts)})" in html
    for customer_id, reason in alerts:
        assert f"<td class=\"\">{customer_id}</td><td class=\"\">{reason}</td>" in html
    # no personal data: no e-mail address or phone number of the source on the page
    source = (demo_source / "customers.csv").read_text().splitlines()[1:40]
    for line in source:
        email = next(f for f in line.split(",") if "@" in f)
        assert email not in html
    assert "@" not in html


def test_text_from_the_data_is_escaped(demo_warehouse):
    data = report.load_report_data(demo_warehouse, MONTH_DATE)
    evil = "<script>alert('x')</script>"
    data = dataclasses.replace(data, run_ids=[evil], alerts=[{
        "customer_id": evil, "reason_code": "value_fell", "detail": "<b>&", "final_tier": "A",
        "previous_final_tier": "A", "is_key_account": True, "credit_grade": "B"}])
    page = report.render_html(data)
    assert "<script" not in page and "<b>&" not in page
    assert escape(evil) in page and "&lt;b&gt;&amp;" in page


def test_html_in_any_value_is_escaped_in_the_tables_and_the_charts(demo_warehouse):
    """Regions, override reasons, codes: whatever text reaches the page, the template escapes it,
    in the HTML tables and in the SVG charts alike."""
    data = report.load_report_data(demo_warehouse, MONTH_DATE)
    evil = "<script>alert('x')</script>"
    key = dict(data.key_accounts[0], customer_code=evil, movement=evil)
    data = dataclasses.replace(
        data, rule_versions=[evil], source=Path(f"/tmp/{evil}"), key_accounts=[key],
        summary=[dict(data.summary[0], final_tier=evil), *data.summary[1:]],
        alerts=[{"customer_id": "C1", "reason_code": "override", "detail": f"override reason: {evil} Region <North>",
                 "final_tier": "A", "previous_final_tier": evil, "is_key_account": False, "credit_grade": evil}])
    page = report.render_html(data)
    assert "<script" not in page and "<North>" not in page
    assert escape(evil) == "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    assert f'<code id="rule-version">{escape(evil)}</code>' in page
    assert f"<td class=\"\">{escape(evil)}</td>" in page.split('id="table-key-accounts"')[1]     # customer_code
    assert f"override reason: {escape(evil)} Region &lt;North&gt;" in page.split('id="table-alerts"')[1]
    assert f'<span class="tier" style="background:#777;color:#fff">{escape(evil)}</span>' in page  # a tier badge
    tiers_svg = page.split('id="chart-tier-customers-svg"')[1].split("</svg>")[0]
    assert f">{escape(evil)}</text>" in tiers_svg and f"<title>{escape(evil)}: " in tiers_svg


def _writable_copy(demo_warehouse, tmp_path):
    """(a warehouse path whose published copy is a writable copy of the demo's, a connection to it)."""
    warehouse = tmp_path / "warehouse" / "tiering.duckdb"
    copy = published_path(warehouse)
    copy.parent.mkdir(parents=True)
    copy.write_bytes(published_path(demo_warehouse).read_bytes())
    copy.chmod(0o644)
    return warehouse, duckdb.connect(str(copy))


def test_a_provisional_month_shows_a_banner(demo_warehouse, html, tmp_path):
    """The banner follows marts.customer_tier_monthly.is_provisional where the copy has the column."""
    assert 'id="provisional"' not in html and "Provisional" not in html   # the demo months have ended
    warehouse, con = _writable_copy(demo_warehouse, tmp_path)
    try:
        con.execute("alter table marts.customer_tier_monthly "
                    "add column if not exists is_provisional boolean default false")
        con.execute("update marts.customer_tier_monthly set is_provisional = (month = ?)", [MONTH_DATE])
    finally:
        con.close()
    data = report.load_report_data(warehouse, MONTH_DATE)
    assert data.provisional is True
    page = report.render_html(data)
    assert '<div class="banner" id="provisional" role="status">Provisional: month not ended yet</div>' in page
    assert report.load_report_data(warehouse, date(2024, 3, 1)).provisional is False


def test_the_page_names_the_value_measure(demo_warehouse, html, tmp_path):
    """Ranked by revenue by default; a month ranked by gross margin (rules value.measure) says so in
    the header, the Pareto chart and its thresholds."""
    assert '<span id="value-measure">revenue</span>' in html
    warehouse, con = _writable_copy(demo_warehouse, tmp_path)
    try:
        con.execute("update marts.customer_tier_monthly set value_measure = 'gross_margin' where month = ?",
                    [MONTH_DATE])
    finally:
        con.close()
    data = report.load_report_data(warehouse, MONTH_DATE)
    data.rules = {"value": {"pareto": {"a_share": 0.8, "b_share": 0.95}}}
    page = report.render_html(data)
    assert '<span id="value-measure">gross margin</span>' in page
    assert "A threshold 80% of gross margin" in page and "Pareto curve: gross margin held by the top" in page


def test_missing_month_and_missing_copy_are_clear_errors(demo_warehouse, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "--month", "2019-01", "--out", str(out), "--warehouse", str(demo_warehouse)]) == 1
    assert "no successful run of 2019-01 in" in capsys.readouterr().err and not out.exists()
    assert main(["report", "--month", MONTH, "--out", str(out),
                 "--warehouse", str(tmp_path / "none" / "tiering.duckdb")]) == 1
    assert "run a month first" in capsys.readouterr().err
    assert main(["report", "--month", MONTH, "--out", str(tmp_path / "r.pdf"),
                 "--warehouse", str(demo_warehouse)]) == 1


# --------------------------------------------------------------------------------------------
# in a real browser
# --------------------------------------------------------------------------------------------

def _require_chromium() -> None:
    missing = [str(p) for p in (report.CHROMIUM, report.CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"headless Chromium not installed ({', '.join(missing)} missing): run `make browser`")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_renders_in_headless_chromium(page, tmp_path):
    _require_chromium()
    png = tmp_path / "report.png"
    result = report.screenshot(page, png, width=1200)
    severe = [e for e in result["console"] if e["level"] == "SEVERE"]
    assert not severe, f"console errors: {severe}"
    assert result["title"] == f"Customer tiering {MONTH}"
    charts = {c["id"]: c for c in result["charts"]}
    assert set(charts) == set(CHARTS)
    for chart in charts.values():
        assert chart["width"] > 200 and chart["height"] > 150, chart
        assert chart["marks"] >= 3, chart    # bars / cells / the curve are drawn
    data = png.read_bytes()
    width, height = _png_size(data)
    assert width == 1200 and height >= 1000
    assert 20_000 < len(data) < 1_000_000    # a real picture, not a blank page


def test_console_errors_are_caught(tmp_path):
    """The console check above is not vacuous: a page that logs an error is seen as SEVERE."""
    _require_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"><title>x</title></head>'
                   '<body><figure data-chart="x" id="x"><svg width="10" height="10"></svg></figure>'
                   '<script>console.error("broken chart")</script></body></html>')
    result = report.screenshot(bad, tmp_path / "bad.png", width=400, max_height=300)
    assert any(e["level"] == "SEVERE" and "broken chart" in e["message"] for e in result["console"])
