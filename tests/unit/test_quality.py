"""Unit tests of tiering.quality: gate configuration, suite construction, the PII check and the
share-sum / A-share checks on tiny tables (no dbt, no Airflow)."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date, datetime

import duckdb
import pandas as pd
import pytest

from tests.fixtures.sources import customer, order, write_source
from tiering import landing, quality
from tiering.errors import QualityGateError
from tiering.runspec import RunSpec
from tiering.warehouse import connect, ensure_schema

MONTH = date(2024, 3, 1)


# --- configuration ---------------------------------------------------------------------------

def test_repository_config_loads_with_row_level_checks_as_warnings():
    config = quality.load_gate_config()
    assert config.severity("landed.orders.valid_amount_amount") == "warn"
    assert config.severity("landed.invoices.valid_date_issued_on") == "warn"
    assert config.severity("landed.orders.row_count_drop") == "error"
    assert config.severity("landed.orders.columns_present") == "error"
    assert config.severity("staging.orders.customer_id_in_customers") == "error"
    assert config.severity("marts.marts_columns.no_pii_columns") == "error"
    assert config.severity("marts.marts_text_values.email_like_values") == "warn"
    assert config.threshold("max_row_count_drop_share") == 0.5
    assert config.data_docs is True


def test_last_matching_pattern_wins_and_an_unmatched_check_is_an_error():
    config = quality.parse_gate_config({"severities": {"landed.*": "warn", "landed.orders.*": "error"}})
    assert config.severity("landed.customers.not_empty") == "warn"
    assert config.severity("landed.orders.not_empty") == "error"
    assert config.severity("marts.tier_policy.tiers") == "error"          # no pattern matches: fail closed
    assert config.threshold("revenue_share_tolerance") == 1e-9              # defaults for thresholds not given


@pytest.mark.parametrize("data, message", [
    ({"severities": {"*": "fatal"}}, "'severities.*' must be error or warn"),
    ({"thresholds": {"max_row_drop": 0.5}},
     "unknown key 'thresholds.max_row_drop'; allowed keys: max_row_count_drop_share, same_month_row_count_drop,"),
    ({"thresholds": {"max_row_count_drop_share": 1.5}},
     "'thresholds.max_row_count_drop_share' = 1.5 is outside [0, 1]"),
    ({"thresholds": {"same_month_row_count_drop": -0.1}},
     "'thresholds.same_month_row_count_drop' = -0.1 is outside [0, 1]"),
    ({"thresholds": {"row_validity_mostly": "high"}},
     "'thresholds.row_validity_mostly' must be a number from 0 to 1, got 'high'"),
    ({"thresholds": {"revenue_share_tolerance": -1}},
     "'thresholds.revenue_share_tolerance' must be at least 0, got -1"),
    ({"pii_column_tokens": []}, "'pii_column_tokens' must be a non-empty list"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"data_docs": "yes"}, "'data_docs' must be true or false"),
])
def test_bad_config_names_the_key(data, message):
    with pytest.raises(quality.QualityConfigError) as err:
        quality.parse_gate_config(data, "gates.yml")
    assert message in str(err.value)


def test_every_problem_of_the_gate_config_is_one_line_naming_the_file():
    with pytest.raises(quality.QualityConfigError) as err:
        quality.parse_gate_config({"severities": {"*": "fatal"}, "data_docs": "yes"}, "expectations/gates.yml")
    assert str(err.value).splitlines() == [
        "expectations/gates.yml: 'severities.*' must be error or warn, got 'fatal'",
        "expectations/gates.yml: 'data_docs' must be true or false, got 'yes'"]


def test_thresholds_not_given_keep_their_defaults_including_the_same_month_drop():
    config = quality.parse_gate_config({"thresholds": {"row_validity_mostly": 0.9}, "severities": None})
    assert config.thresholds == {"max_row_count_drop_share": 0.5, "same_month_row_count_drop": 0.10,
                                 "row_validity_mostly": 0.9, "ids_not_null_mostly": 0.99,
                                 "max_quarantined_share": 0.2, "revenue_share_tolerance": 1e-9,
                                 "max_landed_rows_validated": 1_000_000}
    assert config.severities == (("*", "error"),)
    assert quality.parse_gate_config({"thresholds": {"same_month_row_count_drop": 0.25}}).threshold(
        "same_month_row_count_drop") == 0.25


def test_unknown_gate_is_refused():
    with pytest.raises(ValueError, match="unknown quality gate"):
        quality.load_suite("bronze")


# --- the PII check -----------------------------------------------------------------------------

CONTRACT_MART_COLUMNS = [
    f"customer_tier_monthly.{c}" for c in (
        "customer_id", "month", "net_revenue", "order_count", "recency_days", "value_rank", "value_share",
        "prior_share", "cumulative_share", "value_tier", "is_key_account", "is_active", "credit_grade",
        "final_tier", "credit_hold", "movement", "previous_final_tier", "customer_code", "rule_version", "run_id",
        "region", "customer_kind", "account_manager", "contact_cadence", "contact_days", "review_cadence_months",
        "complaint_priority", "override_reason", "override_approved_by_key", "tenure_months")
] + ["tier_policy.description", "customer_credit_monthly.dpd_bucket", "customer_tier_history.valid_from"]


def test_pii_check_flags_personal_data_columns_and_nothing_else():
    marts = quality.load_suite("marts")
    tokens = quality.load_gate_config().pii_column_tokens
    personal = ["t.name", "t.customer_name", "t.email", "t.contact_email", "t.E_Mail", "t.phone_number",
                "t.phone", "t.firstname", "t.emailaddress", "t.mobile", "t.tel", "t.postal_address",
                "t.date_of_birth", "t.iban", "t.override_approver"]
    assert marts.pii_columns(personal, tokens) == personal
    assert marts.pii_columns(CONTRACT_MART_COLUMNS, tokens) == []
    # a table name alone never makes a column personal
    assert marts.pii_columns(["customer_names.customer_id"], tokens) == []


# --- suite construction: gate (a) on a hand-made change log ----------------------------------------

def _spec(tmp_path, month=MONTH, run_id=None, **extra) -> RunSpec:
    return RunSpec(month=month, run_id=run_id or f"{month:%Y%m}-unit", source_dir=tmp_path / "source",
                   warehouse=tmp_path / "wh" / "tiering.duckdb", **extra)


@pytest.fixture
def landed(tmp_path):
    write_source(
        tmp_path / "source",
        customers=[customer("C1"), customer("C2"), customer("C3")],
        orders=[order("O1", "C1", "100.00", "2024-03-02T10:00:00"),
                order("O2", "C2", "twelve", "2024-03-03T10:00:00"),
                order("O3", "C3", "5.50", "15/03/2024"),
                order("O4", "C1", "7.25", "2024-03-04T10:00:00", currency="ZZZ")],
    )
    spec = _spec(tmp_path)
    landing.extract_and_land(spec)
    return spec


def test_landed_suite_has_batch_checks_as_errors_and_row_checks_as_warnings(landed):
    builder = quality.build_gate("landed", landed)
    by_id = {c.check_id: c for c in builder.checks}
    for check in ("landed.customers.columns_present", "landed.customers.not_empty",
                  "landed.orders.columns_present", "landed.orders.not_empty", "landed.orders.id_not_null_order_id"):
        assert by_id[check].severity == "error", check
    for check in ("landed.orders.valid_amount_amount", "landed.orders.valid_timestamp_ordered_at",
                  "landed.orders.valid_value_status", "landed.orders.valid_currency",
                  "landed.orders.valid_required_customer_id", "landed.orders.valid_unique_version"):
        assert by_id[check].severity == "warn", check
    assert by_id["landed.orders.valid_amount_amount"].expectation.min_value == 0.99      # row_validity_mostly
    assert by_id["landed.orders.id_not_null_order_id"].expectation.min_value == 0.99     # ids_not_null_mostly
    # the severity travels in Great Expectations' own field: error -> critical, warn -> warning
    assert by_id["landed.orders.not_empty"].expectation.severity == "critical"
    assert by_id["landed.orders.valid_amount_amount"].expectation.severity == "warning"
    assert not any(c.endswith("row_count_drop") for c in by_id)       # no previous month: skipped, and said so
    assert any("row_count_drop not evaluated: no successful run of 2024-02" in note for note in builder.notes)
    assert not any(c.startswith("landed.invoices.") for c in by_id)   # optional file absent: nothing to check
    assert builder.con is None                                         # the warehouse is closed again
    # GE sees one row of counts per table, never the landed rows
    assert all(len(frame) == 1 for frame in builder.datasets.values())
    assert builder.datasets["orders"][["rows", "landed_rows", "validated_rows"]].values.tolist() == [[4, 4, 4]]


def test_landed_row_level_problems_are_recorded_as_warnings_not_errors(landed):
    rows, _ = quality.evaluate(quality.build_gate("landed", landed))
    by_id = {r["check_id"]: r for r in rows}
    amount = by_id["landed.orders.valid_amount_amount"]
    assert (amount["success"], amount["severity"], amount["unexpected_count"]) == (False, "warn", 1)
    assert amount["observed_value"] == '0.75 (1 of 4 landed rows fail, e.g. ["twelve"])'
    assert by_id["landed.orders.valid_timestamp_ordered_at"]["unexpected_count"] == 1
    assert by_id["landed.orders.valid_currency"]["unexpected_count"] == 1
    assert not [r for r in rows if r["severity"] == "error" and not r["success"]]
    assert by_id["landed.orders.valid_amount_amount"]["expectation"] == (
        "landed.orders.valid_amount_amount: expect_column_min_to_be_between(column=valid_amount_amount_share, "
        "min_value=0.99)")
    assert by_id["landed.orders.id_not_null_order_id"]["observed_value"] == "1.0 (0 of 4 landed rows fail)"


def test_an_empty_id_fails_the_landed_gate_with_its_count(tmp_path, no_docs):
    write_source(tmp_path / "source", customers=[customer("C1")],
                 orders=[order("", "C1", "1.00", "2024-03-02T10:00:00"), order("O2", "C1", "2.00", "2024-03-03")])
    spec = _spec(tmp_path)
    landing.extract_and_land(spec)
    with pytest.raises(QualityGateError, match=r"landed\.orders\.id_not_null_order_id: expect_column_min_to_be_between"
                                               r"\(column=id_not_null_order_id_share, min_value=0\.99\) -> observed "
                                               r"0\.5 \(1 of 2 landed rows fail\)"):
        quality.run_gate("landed", spec)


def test_a_credit_notes_amount_is_valid_when_not_positive_and_any_other_when_not_negative(tmp_path):
    write_source(tmp_path / "source", customers=[customer("C1")],
                 orders=[order("O1", "C1", "-5.00", "2024-03-02T10:00:00", status="credit_note"),
                         order("O2", "C1", "0", "2024-03-02T10:00:00", status="credit_note"),
                         order("O3", "C1", "7.00", "2024-03-02T10:00:00"),
                         order("O4", "C1", "4.00", "2024-03-02T10:00:00", status="credit_note"),  # positive
                         order("O5", "C1", "-3.00", "2024-03-02T10:00:00")])                      # negative
    spec = _spec(tmp_path)
    landing.extract_and_land(spec)
    rows, _ = quality.evaluate(quality.build_gate("landed", spec))
    amount = next(r for r in rows if r["check_id"] == "landed.orders.valid_amount_amount")
    assert amount["unexpected_count"] == 2
    assert amount["observed_value"] == '0.6 (2 of 5 landed rows fail, e.g. ["-3.00", "4.00"])'


def _manifest_of(spec: RunSpec, run_id: str, month: date, status: str, rows: dict[str, int]) -> None:
    """A run of `month` in audit.runs whose landing manifest says it read `rows`."""
    path = spec.warehouse.parent / "manifests" / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "tables": {t: {"rows": n} for t, n in rows.items()}}))
    con = connect(spec.warehouse)
    ensure_schema(con)
    con.execute("insert into audit.runs (run_id, month, status, landing_dir, started_at, finished_at) "
                "values (?, ?, ?, ?, ?, ?)", [run_id, month, status, str(path), datetime(2024, 3, 1),
                                              datetime(2024, 3, 1)])
    con.close()


def test_row_count_drop_is_checked_against_the_rows_the_previous_months_successful_run_read(landed):
    _manifest_of(landed, "202402-ok", date(2024, 2, 1), "success", {"orders": 11, "customers": 3})
    _manifest_of(landed, "202402-bad", date(2024, 2, 1), "failed", {"orders": 999, "customers": 3})
    builder = quality.build_gate("landed", landed)
    drop = next(c for c in builder.checks if c.check_id == "landed.orders.row_count_drop")
    assert drop.severity == "error"
    assert drop.expectation.min_value == math.ceil(11 * 0.5)           # the failed run's count is ignored
    rows, _ = quality.evaluate(builder)
    result = next(r for r in rows if r["check_id"] == "landed.orders.row_count_drop")
    assert (result["success"], result["observed_value"]) == (False, "4")   # 4 rows < 6
    assert next(r for r in rows if r["check_id"] == "landed.customers.row_count_drop")["success"] is True


def test_same_month_row_count_drop_is_checked_against_the_months_last_successful_run(landed):
    _manifest_of(landed, "202403-earlier", date(2024, 3, 1), "success", {"orders": 5, "customers": 3})
    builder = quality.build_gate("landed", landed)
    drop = next(c for c in builder.checks if c.check_id == "landed.orders.same_month_row_count_drop")
    assert drop.expectation.min_value == math.ceil(5 * 0.9)
    rows, _ = quality.evaluate(builder)
    result = next(r for r in rows if r["check_id"] == "landed.orders.same_month_row_count_drop")
    assert (result["success"], result["severity"], result["observed_value"]) == (False, "error", "4")


def test_an_unreadable_previous_manifest_skips_the_comparison_and_says_why(landed):
    _manifest_of(landed, "202402-ok", date(2024, 2, 1), "success", {"orders": 11})
    (landed.warehouse.parent / "manifests" / "202402-ok.json").write_text("not json")
    builder = quality.build_gate("landed", landed)
    assert not any(c.check_id.endswith(".row_count_drop") for c in builder.checks)
    assert any("row_count_drop not evaluated: the landing manifest of run 202402-ok" in n for n in builder.notes)


def test_row_level_checks_read_the_partitions_the_run_landed_and_counts_what_the_month_reads(tmp_path):
    write_source(
        tmp_path / "source",
        customers=[customer("C1")],
        orders=[order("O1", "C1", "1.00", "2024-02-02T10:00:00"),                  # February's: checked then
                order("O2", "C1", "bad", "2024-02-03T10:00:00"),
                order("O3", "C1", "3.00", "2024-03-02T10:00:00"),                  # March's: checked now
                order("O4", "C1", "4.00", "2024-02-04T10:00:00", updated="no date")],  # cannot be placed
    )
    landing.extract_and_land(_spec(tmp_path, month=date(2024, 2, 1)))    # lands 2024-02 and unparseable
    spec = _spec(tmp_path)
    manifest = landing.extract_and_land(spec)
    assert manifest["tables"]["orders"]["landed"] == ["2024-03"]
    builder = quality.build_gate("landed", spec)
    assert builder.datasets["orders"][["rows", "landed_rows", "validated_rows"]].values.tolist() == [[4, 1, 1]]
    assert any("row-level checks not evaluated for customers" in n for n in builder.notes)   # nothing new landed
    rows, _ = quality.evaluate(builder)
    by_id = {r["check_id"]: r for r in rows}
    assert by_id["landed.orders.not_empty"]["observed_value"] == "4"
    assert by_id["landed.orders.valid_amount_amount"]["unexpected_count"] == 0     # O2 was February's
    assert "landed.customers.valid_required_customer_kind" not in by_id
    assert by_id["landed.customers.not_empty"]["success"] is True


def _partitions(**rows: int) -> dict:
    return {"landed": list(rows), "partitions": {p: {"rows": n, "file": f"{p}.parquet"} for p, n in rows.items()}}


@pytest.mark.parametrize("limit, whole, cut, kept", [
    (10, ["unparseable.parquet", "2024-03.parquet", "2024-02.parquet", "2024-01.parquet"], None, 7),
    (1, ["unparseable.parquet"], None, 1),
    (2, ["unparseable.parquet"], ("2024-03.parquet", 1), 2),          # the newest partition, cut in line order
    (3, ["unparseable.parquet", "2024-03.parquet"], None, 3),
    (5, ["unparseable.parquet", "2024-03.parquet"], ("2024-02.parquet", 2), 5),
])
def test_row_level_checks_scan_unparseable_then_the_newest_landed_partitions_up_to_the_limit(limit, whole, cut,
                                                                                             kept):
    landed_suite = quality.load_suite("landed")
    table = _partitions(**{"2024-01": 1, "2024-02": 3, "2024-03": 2, "unparseable": 1})
    assert landed_suite.validated_files(table, limit) == (whole, cut, kept)


def test_row_level_checks_read_at_most_max_landed_rows_validated_and_say_so(landed):
    config = replace(quality.load_gate_config(), thresholds={**quality.DEFAULT_THRESHOLDS,
                                                             "max_landed_rows_validated": 2})
    builder = quality.build_gate("landed", landed, config)
    # O3's updated_at cannot be parsed (partition unparseable, first), then the first line of 2024-03: O1
    assert builder.datasets["orders"][["rows", "landed_rows", "validated_rows"]].values.tolist() == [[4, 4, 2]]
    assert any("orders: row-level checks on 2 of the 4 landed rows" in n for n in builder.notes)
    rows, _ = quality.evaluate(builder)
    by_id = {r["check_id"]: r for r in rows}
    assert by_id["landed.orders.valid_timestamp_ordered_at"]["unexpected_count"] == 1      # O3
    assert by_id["landed.orders.valid_amount_amount"]["unexpected_count"] == 0             # O2 not scanned

# --- gate (c) on tiny marts tables -------------------------------------------------------------------

def _tier_rows(month: date, rows: list[tuple]) -> list[dict]:
    return [{"customer_id": c, "month": month, "net_revenue": revenue, "value_share": share, "value_tier": tier,
             "final_tier": tier, "credit_grade": "unrated", "movement": "new", "region": "North"}
            for c, revenue, share, tier in rows]


CURRENT = [("C1", 80.0, 0.80, "A"), ("C2", 15.0, 0.15, "B"), ("C3", 5.0, 0.05, "C"), ("C4", 0.0, 0.0, "C")]


def _summary(month: date, shares=(0.80, 0.15, 0.05), counts=(1, 1, 2)) -> list[dict]:
    return [{"month": month, "final_tier": t, "customer_count": n, "net_revenue": s * 100, "revenue_share": s}
            for t, n, s in zip("ABC", counts, shares, strict=True)]


def _write_marts(spec: RunSpec, tier_rows: list[dict], summary_rows: list[dict], extra_sql: str = "") -> None:
    spec.warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(spec.warehouse))
    con.execute("create schema if not exists marts")
    tiers = pd.DataFrame(tier_rows)
    summary = pd.DataFrame(summary_rows)
    con.register("tiers", tiers)
    con.register("summary", summary)
    con.execute("create or replace table marts.customer_tier_monthly as "
                "select * replace (month::date as month, net_revenue::decimal(18, 4) as net_revenue) from tiers")
    con.execute("create or replace table marts.tier_summary_monthly as "
                "select * replace (month::date as month, net_revenue::decimal(18, 4) as net_revenue) from summary")
    if extra_sql:
        con.execute(extra_sql)
    con.close()


@pytest.fixture
def no_docs(monkeypatch):
    config = replace(quality.load_gate_config(), data_docs=False)
    monkeypatch.setattr(quality, "load_gate_config", lambda path=None: config)
    return config


def _dq_rows(spec: RunSpec, gate: str) -> list[tuple]:
    con = duckdb.connect(str(spec.warehouse), read_only=True)
    try:
        return con.execute("select expectation, severity, success, observed_value from audit.dq_results "
                           "where run_id = ? and gate = ? order by expectation", [spec.run_id, gate]).fetchall()
    finally:
        con.close()


def test_marts_gate_passes_on_consistent_marts_and_records_every_result_idempotently(tmp_path, no_docs, capfd):
    spec = _spec(tmp_path)
    previous = _tier_rows(date(2024, 2, 1), [("C1", 70.0, 0.9, "A"), ("C2", 7.0, 0.1, "B")])
    _write_marts(spec, previous + _tier_rows(MONTH, CURRENT), _summary(MONTH))
    summary = quality.run_gate("marts", spec)
    assert summary["gate"] == "marts" and summary["failed_errors"] == 0 and summary["evaluated"] > 10
    assert set(summary) >= {"gate", "evaluated", "failed_errors", "failed_warnings", "seconds"}
    recorded = _dq_rows(spec, "marts")
    assert len(recorded) == summary["evaluated"] and all(success for _, _, success, _ in recorded)
    texts = " ".join(r[0] for r in recorded)
    for check in ("a_customers_value_share", "revenue_share_sums_to_one", "still_present", "no_pii_columns",
                  "one_row_per_customer_month", "movement_in_set"):
        assert f".{check}:" in texts, check
    quality.run_gate("marts", spec)                                     # a retry replaces, never duplicates
    assert len(_dq_rows(spec, "marts")) == summary["evaluated"]
    output = capfd.readouterr()
    assert "Calculating Metrics" not in output.out + output.err      # no GE progress bars


def test_revenue_shares_not_summing_to_one_fail_the_marts_gate(tmp_path, no_docs):
    spec = _spec(tmp_path)
    _write_marts(spec, _tier_rows(MONTH, CURRENT), _summary(MONTH, shares=(0.80, 0.15, 0.04)))
    with pytest.raises(QualityGateError) as err:
        quality.run_gate("marts", spec)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("quality gate 'marts' failed for 2024-03")
    assert "marts.tier_summary_monthly.revenue_share_sums_to_one: expect_column_sum_to_be_between(" in message
    assert "observed 0.99" in message


def test_shares_of_a_month_without_revenue_sum_to_zero(tmp_path, no_docs):
    spec = _spec(tmp_path)
    idle = [(c, 0.0, 0.0, "C") for c in ("C1", "C2")]
    _write_marts(spec, _tier_rows(MONTH, idle), _summary(MONTH, shares=(0.0, 0.0, 0.0), counts=(0, 0, 2)))
    summary = quality.run_gate("marts", spec)
    assert summary["failed_errors"] == 0
    assert any("a_customers_value_share not evaluated: no revenue" in s for s in summary["skipped"])


def test_a_customers_below_the_pareto_share_fail_the_marts_gate(tmp_path, no_docs):
    spec = _spec(tmp_path)
    wrong = [("C1", 80.0, 0.80, "B"), ("C2", 15.0, 0.15, "A"), ("C3", 5.0, 0.05, "C"), ("C4", 0.0, 0.0, "C")]
    _write_marts(spec, _tier_rows(MONTH, wrong), _summary(MONTH))
    with pytest.raises(QualityGateError, match=r"a_customers_value_share: .* where value_tier == \"A\" "
                                               r"-> observed 0\.15"):
        quality.run_gate("marts", spec)


def test_a_personal_data_column_in_marts_fails_the_gate(tmp_path, no_docs):
    spec = _spec(tmp_path)
    _write_marts(spec, _tier_rows(MONTH, CURRENT), _summary(MONTH),
                 "alter table marts.customer_tier_monthly add column contact_email varchar default 'a@b.example'")
    with pytest.raises(QualityGateError) as err:
        quality.run_gate("marts", spec)
    assert "marts.marts_columns.no_pii_columns" in str(err.value)
    assert "customer_tier_monthly.contact_email" in str(err.value)
    warned = [r for r in _dq_rows(spec, "marts") if "email_like_values" in r[0]]
    assert warned and warned[0][1:3] == ("warn", False)


def test_a_customer_of_the_previous_month_missing_now_fails_the_marts_gate(tmp_path, no_docs):
    spec = _spec(tmp_path)
    previous = _tier_rows(date(2024, 2, 1), [("C1", 70.0, 0.9, "A"), ("C9", 7.0, 0.1, "B")])
    _write_marts(spec, previous + _tier_rows(MONTH, CURRENT), _summary(MONTH))
    with pytest.raises(QualityGateError, match=r"still_present: .* -> observed 1 of 2 rows unexpected .*C9"):
        quality.run_gate("marts", spec)


def test_dq_report_lists_the_latest_run_of_the_month(tmp_path, no_docs):
    spec = _spec(tmp_path)
    _write_marts(spec, _tier_rows(MONTH, CURRENT), _summary(MONTH, shares=(0.80, 0.15, 0.04)))
    with pytest.raises(QualityGateError):
        quality.run_gate("marts", spec)
    rows = quality.dq_report(spec.warehouse, MONTH)
    assert rows and {r["run_id"] for r in rows} == {spec.run_id}
    assert set(rows[0]) == set(quality.DQ_COLUMNS)
    assert rows[0]["success"] is False                                # failures first
    text = quality.format_dq_report(rows)
    assert "gate marts: FAILED" in text and "FAIL error marts.tier_summary_monthly.revenue_share_sums_to_one" in text
    assert quality.dq_report(spec.warehouse, date(2023, 1, 1)) == []
    assert "no data quality results" in quality.format_dq_report([])


def test_data_docs_are_built_into_the_runs_folder(tmp_path):
    spec = _spec(tmp_path)
    _write_marts(spec, _tier_rows(MONTH, CURRENT), _summary(MONTH))
    summary = quality.run_gate("marts", spec)
    index = tmp_path / "wh" / "gx_docs" / spec.run_id / "index.html"
    assert summary["data_docs"] == str(index) and index.is_file()
    # every dataset the gate validated has its page (one Checkpoint per dataset, docs built once)
    root = len(index.parent.parts)
    pages = {".".join(page.parts[root + 1:root + 3]) for page in (index.parent / "validations").rglob("*.html")}
    validated = {f"marts.{check.split('.')[1]}" for check in
                 (r[0] for r in duckdb.connect(str(spec.warehouse), read_only=True).execute(
                     "select split_part(expectation, ':', 1) from audit.dq_results where run_id = ?",
                     [spec.run_id]).fetchall())}
    assert pages == validated and len(pages) > 1, pages
