"""Customer potential (tiering.potential): purchase-history summary, BG/NBD + Gamma-Gamma fit and
prediction on hand-made data, the pipeline step's storage and failure handling, rules validation."""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tests.fixtures.rules import rules_file
from tiering import potential
from tiering.potential import PotentialFitError, fit, horizon_days, predict, summarise
from tiering.pseudonym import customer_key
from tiering.rules import RulesError, load_rules
from tiering.runspec import RunSpec

END = date(2025, 1, 1)   # observation end (exclusive): the month 2024-12


def _summary_of(orders: list[tuple[str, str, float]], end: date = END) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        frame = pd.DataFrame(orders, columns=["customer_id", "ordered_at", "amount"])
        frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
        con.register("orders", frame)
        return summarise(con, end).set_index("customer_id")
    finally:
        con.close()


def test_summary_counts_purchase_days_from_first_purchase():
    s = _summary_of([
        ("C1", "2024-01-10 09:00", 100.0),
        ("C1", "2024-01-10 15:00", 50.0),   # same day: one purchase of 150
        ("C1", "2024-03-01 10:00", 80.0),
        ("C1", "2024-12-31 23:00", 120.0),
        ("C2", "2024-12-01 10:00", 70.0),   # one purchase only
        ("C3", "2025-01-01 00:00", 10.0),   # after the observation end: not seen
    ])
    assert list(s.index) == ["C1", "C2"]
    c1 = s.loc["C1"]
    assert c1["frequency"] == 2                                # 3 purchase days - 1
    assert c1["recency"] == (date(2024, 12, 31) - date(2024, 1, 10)).days == 356
    assert c1["T"] == (END - date(2024, 1, 10)).days == 357
    assert c1["monetary"] == pytest.approx((80 + 120) / 2)    # repeat purchases only
    c2 = s.loc["C2"]
    assert (c2["frequency"], c2["recency"], c2["T"]) == (0, 0, 31)
    assert pd.isna(c2["monetary"])


def _population(n: int = 300, seed: int = 5) -> list[tuple[str, str, float]]:
    """A reproducible background population: a year of purchases, 30% stop early."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1)
    orders = []
    for i in range(n):
        first = int(rng.integers(0, 200))
        rate = float(rng.gamma(2.0, 1 / 40))               # purchases per day
        life = int(rng.integers(30, 150)) if rng.random() < 0.3 else 10_000
        spend = float(rng.gamma(8, 15))
        day = first
        while day < 366 and day - first <= life:
            orders.append((f"P{i:04d}", f"{start + timedelta(days=day):%Y-%m-%d} 12:00",
                           round(float(rng.gamma(8, spend / 8)), 2)))
            day += 1 + int(rng.exponential(1 / rate))
    return orders


# The hand-made pair: same number and value of purchases in the year; ALIVE kept buying every two
# weeks until the last days, GONE bought every two weeks in the first quarter and never again.
ALIVE = [("ALIVE", f"{datetime(2024, 1, 5) + timedelta(days=14 * k):%Y-%m-%d} 10:00", 200.0) for k in range(26)]
GONE = [("GONE", f"{datetime(2024, 1, 5) + timedelta(days=3 * k):%Y-%m-%d} 10:00", 200.0) for k in range(26)]
ONCE = [("ONCE", "2024-11-20 10:00", 5000.0)]


@pytest.fixture(scope="module")
def scored() -> pd.DataFrame:
    summary = _summary_of(_population() + ALIVE + GONE + ONCE).reset_index()
    models = fit(summary, penalizer_coef=0.001)
    return predict(models, summary, horizon_days(END, 12)).set_index("customer_id")


def test_alive_customer_is_more_likely_alive_than_gone_one(scored):
    alive, gone = scored.loc["ALIVE"], scored.loc["GONE"]
    assert alive["frequency"] == gone["frequency"] == 25
    assert alive["p_alive"] > 0.9
    assert gone["p_alive"] < 0.1
    assert alive["expected_purchases"] > 10 * gone["expected_purchases"]
    assert alive["expected_revenue"] > gone["expected_revenue"]


def test_one_purchase_customer_gets_population_spend(scored):
    once = scored.loc["ONCE"]
    assert once["frequency"] == 0 and pd.isna(once["monetary"])
    # Gamma-Gamma for frequency 0 is the population mean spend, whatever the first order's value
    assert once["expected_spend_per_purchase"] == pytest.approx(scored["expected_spend_per_purchase"][
        scored["frequency"] == 0].iloc[0])
    assert 0 < once["expected_spend_per_purchase"] < 1000
    assert 0 < once["p_alive"] <= 1


def test_fit_is_reproducible_and_sample_is_stable():
    summary = _summary_of(_population(200, seed=9)).reset_index()
    first = predict(fit(summary), summary, 366)
    again = predict(fit(summary.sample(frac=1, random_state=1).sort_values("customer_id")), summary, 366)
    pd.testing.assert_frame_equal(first, again)
    sampled = fit(summary, max_customers=120)
    assert sampled.fitted_customers == 120
    assert fit(summary, max_customers=120).params == sampled.params


def test_the_fit_sample_order_is_the_sha256_of_each_id():
    ids = pd.Series(["C2", "C10", "Ärger & Söhne", "C1", "C3"])
    expected = np.argsort([int(hashlib.sha256(c.encode()).hexdigest()[:15], 16) for c in ids], kind="stable")
    assert list(potential._stable_order(ids)) == list(expected)


def test_customer_keys_are_written_for_new_customers_and_all_again_for_a_new_secret(tmp_path, monkeypatch):
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    for statement in potential.DDL:
        con.execute(statement)
    con.execute("create schema intermediate; create table intermediate.int_customers__as_of (customer_id varchar)")
    con.execute("insert into intermediate.int_customers__as_of values ('C1'), ('C2')")

    def keys():
        return con.execute("select customer_id, customer_key from potential.customer_keys order by 1").fetchall()

    assert potential.refresh_customer_keys(con) == 2
    first_key = keys()[0][1]
    con.execute("insert into intermediate.int_customers__as_of values ('C3')")
    assert potential.refresh_customer_keys(con) == 1                  # C1 and C2 keep their keys
    assert keys() == [(c, customer_key(c)) for c in ("C1", "C2", "C3")]
    monkeypatch.setenv("TIERING_PSEUDONYM_KEY", "another secret")
    assert potential.refresh_customer_keys(con) == 3                  # every key written again
    assert keys() == [(c, customer_key(c)) for c in ("C1", "C2", "C3")] and keys()[0][1] != first_key
    con.close()


def test_fit_needs_repeat_purchases():
    summary = _summary_of([(f"C{i}", "2024-06-01 10:00", 10.0) for i in range(30)]).reset_index()
    with pytest.raises(PotentialFitError, match="repeat purchases"):
        fit(summary)


def test_horizon_days_counts_calendar_months():
    assert horizon_days(date(2024, 1, 1), 12) == 366       # 2024 is a leap year
    assert horizon_days(date(2025, 1, 1), 12) == 365
    assert horizon_days(date(2024, 3, 1), 3) == 92


# --- the pipeline step on a minimal warehouse ---------------------------------------------------

def _warehouse(tmp_path: Path, orders: list[tuple[str, str, float]], status: str = "completed") -> Path:
    path = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema intermediate")
    frame = pd.DataFrame(orders, columns=["customer_id", "ordered_at", "amount_reporting"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
    con.register("o", frame)
    con.execute(f"""create table intermediate.int_orders__in_reporting_currency as
                    select customer_id, ordered_at, '{status}' as order_status,
                           cast(amount_reporting as decimal(18, 4)) as amount_reporting from o""")
    con.execute("create table intermediate.int_customers__as_of as select distinct customer_id from o")
    con.close()
    return path


def _spec(path: Path, month: date = date(2024, 12, 1), run_id: str = "r1") -> RunSpec:
    return RunSpec(month=month, run_id=run_id, source_dir=path.parent, warehouse=path)


def test_step_stores_predictions_and_reruns_identically(tmp_path):
    path = _warehouse(tmp_path, _population(120, seed=3) + ALIVE + GONE)
    rules = load_rules()
    first = potential.score_month(_spec(path, run_id="r1"), rules)
    second = potential.score_month(_spec(path, run_id="r2"), rules)
    assert first["status"] == second["status"] == "ok"
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("""select * exclude (run_id) from potential.customer_potential
                              order by customer_id""").df()
        log = con.execute("select run_id, status, customers from potential.fit_log order by run_id").fetchall()
        keys = con.execute("select count(*), count(distinct customer_key) from potential.customer_keys").fetchone()
    finally:
        con.close()
    assert len(rows) == first["scored"] == first["customers"] > 100     # one row per customer, replaced
    assert set(rows["fit_status"]) == {"ok"} and set(rows["horizon_months"]) == {12}
    assert rows.set_index("customer_id").loc["ALIVE", "p_alive"] > rows.set_index("customer_id").loc["GONE", "p_alive"]
    assert [(r, s) for r, s, _ in log] == [("r1", "ok"), ("r2", "ok")]
    assert keys[0] == keys[1] == len(rows)


def test_step_failure_is_recorded_not_raised(tmp_path):
    # every customer bought once: no Gamma-Gamma fit possible
    path = _warehouse(tmp_path, [(f"C{i:03d}", "2024-06-01 10:00", 10.0) for i in range(40)])
    result = potential.score_month(_spec(path), load_rules())
    assert result["status"] == "failed" and "repeat purchases" in result["message"]
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("select count(*) from potential.customer_potential").fetchone()[0] == 0
        assert con.execute("select status, customers from potential.fit_log").fetchall() == [("failed", 40)]
    finally:
        con.close()


def test_step_skips_when_disabled_or_too_few_customers(tmp_path):
    path = _warehouse(tmp_path, ALIVE + GONE)
    assert potential.score_month(_spec(path), load_rules())["status"] == "skipped"      # 2 < min_customers
    disabled = load_rules(rules_file(tmp_path / "off", **{"potential.enabled": False}))
    result = potential.score_month(_spec(path, run_id="r2"), disabled)
    assert result == {"status": "skipped", "message": "potential.enabled is false in the rules file",
                      "customers": 0, "scored": 0, "seconds": result["seconds"]}


@pytest.mark.parametrize("key, value, message", [
    ("potential.enabled", "yes", "'potential.enabled' must be true or false"),
    ("potential.horizon_months", 0, "'potential.horizon_months' must be a whole number from 1 to 60"),
    ("potential.min_customers", 1.5, "'potential.min_customers'"),
    ("potential.penalizer_coef", -1, "'potential.penalizer_coef' = -1 is outside"),
    ("potential.sample", 5, "unknown key 'potential.sample'"),
])
def test_rules_validate_potential_section(tmp_path, key, value, message):
    with pytest.raises(RulesError, match=message.replace("(", r"\(")):
        load_rules(rules_file(tmp_path, **{key: value}))


def test_potential_section_is_optional(tmp_path):
    import yaml

    path = rules_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    data.pop("potential")
    path.write_text(yaml.safe_dump(data))
    assert potential.settings(load_rules(path)) == potential.DEFAULTS
