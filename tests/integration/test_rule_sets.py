"""The three rule sets on one generated source, each checked against an independent pandas
computation written here from the contract (not by calling the project's SQL)."""
from __future__ import annotations

import math

import duckdb
import pandas as pd
import pytest

from tests.conftest import run_steps
from tests.fixtures.rules import rules_file

MONTH = "2024-04"
# the small demo has four months of data: thresholds scaled so that all four spend tiers occur
SPEND = {"a_min": 3000, "b_min": 1500, "c_min": 500}
CUTOFF = pd.Timestamp("2024-05-01")
WINDOW_START = pd.Timestamp("2023-05-01")


def _latest(df: pd.DataFrame, key: str) -> pd.DataFrame:
    return df.sort_values("updated_ts").groupby(key, sort=False).tail(1)


def pandas_values(source) -> pd.Series:
    """Net revenue per customer known at the month end, straight from the CSV files."""
    customers = pd.read_csv(source / "customers.csv", dtype=str, keep_default_na=False)
    customers["updated_ts"] = pd.to_datetime(customers["updated_at"], errors="coerce", format="ISO8601")
    customers = customers[(customers["updated_ts"] < CUTOFF)
                          & customers["customer_kind"].isin(["individual", "organisation"])
                          & pd.to_datetime(customers["created_at"], errors="coerce", format="ISO8601").notna()]
    known = set(customers["customer_id"])

    fx = pd.read_csv(source / "fx_rates.csv", dtype=str, keep_default_na=False)
    rates = {(r.currency, r.month): float(r.rate_to_reporting) for r in fx.itertuples()}
    currencies = {"EUR"} | {c for c, _ in rates}

    orders = pd.read_csv(source / "orders.csv", dtype=str, keep_default_na=False)
    orders["updated_ts"] = pd.to_datetime(orders["updated_at"], errors="coerce", format="ISO8601")
    orders["ordered_ts"] = pd.to_datetime(orders["ordered_at"], errors="coerce", format="ISO8601")
    orders["amount_num"] = pd.to_numeric(orders["amount"], errors="coerce")
    orders["month_key"] = orders["ordered_ts"].dt.strftime("%Y-%m")
    orders["rate"] = [1.0 if cur == "EUR" else rates.get((cur, mk), math.nan)
                      for cur, mk in zip(orders["currency"], orders["month_key"], strict=True)]
    valid = orders[
        orders["updated_ts"].notna() & (orders["updated_ts"] < CUTOFF) & orders["ordered_ts"].notna()
        & orders["amount_num"].notna()
        # a credit note (a return) has an amount of zero or less, every other order zero or more
        & (((orders["status"] == "credit_note") & (orders["amount_num"] <= 0))
           | ((orders["status"] != "credit_note") & (orders["amount_num"] >= 0)))
        & orders["status"].isin(["completed", "cancelled", "returned", "credit_note"])
        & orders["currency"].isin(currencies) & orders["rate"].notna()
        & orders["customer_id"].isin(known) & (orders["order_id"] != "")
    ]
    latest = _latest(valid, "order_id")
    # completed orders less the credit notes dated in the window
    counted = latest[latest["status"].isin(["completed", "credit_note"]) & (latest["ordered_ts"] >= WINDOW_START)
                     & (latest["ordered_ts"] < CUTOFF)]
    revenue = (counted["amount_num"] * counted["rate"]).groupby(counted["customer_id"]).sum()
    return revenue.reindex(sorted(known), fill_value=0.0)


def pandas_tiers(values: pd.Series, rule_set: str) -> dict[str, str]:
    positive = values[values > 0]
    ranked = sorted(positive.index, key=lambda c: (-positive[c], c))
    total, n = positive.sum(), len(ranked)
    tiers = {c: ("D" if rule_set == "spend" else "C") for c in values.index}
    prior = 0.0
    for rank, cid in enumerate(ranked, start=1):
        if rule_set == "pareto":
            tiers[cid] = "A" if prior < 0.80 * total else "B" if prior < 0.95 * total else "C"
        elif rule_set == "count":
            tiers[cid] = "A" if rank <= math.ceil(0.2 * n) else "B" if rank <= math.ceil(0.5 * n) else "C"
        prior += positive[cid]
    if rule_set == "spend":
        for cid, value in positive.items():
            tiers[cid] = ("A" if value >= SPEND["a_min"] else "B" if value >= SPEND["b_min"]
                          else "C" if value >= SPEND["c_min"] else "D")
    return tiers


@pytest.fixture(scope="module")
def expected_values(demo_source):
    return pandas_values(demo_source)


@pytest.mark.parametrize("rule_set", ["pareto", "count", "spend"])
def test_rule_set_matches_pandas(rule_set, demo_source, expected_values, tmp_path_factory):
    base = tmp_path_factory.mktemp(rule_set)
    rules = rules_file(base, **{"value.rule_set": rule_set, "value.spend": SPEND})
    warehouse = base / "tiering.duckdb"
    run_steps({"month": MONTH, "source_dir": str(demo_source), "warehouse": str(warehouse), "rules_path": str(rules)})
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute("select customer_id, value_tier, net_revenue, rule_set from marts.customer_tier_monthly "
                       "where month = date '2024-04-01'").fetchall()
    con.close()
    assert {r[3] for r in rows} == {rule_set}
    actual_values = {r[0]: float(r[2]) for r in rows}
    assert actual_values == pytest.approx(expected_values.to_dict(), abs=0.01)
    expected = pandas_tiers(expected_values, rule_set)
    actual = {r[0]: r[1] for r in rows}
    assert actual == expected
    assert len(set(actual.values())) >= 2, "a degenerate distribution would prove nothing"


def test_bad_rules_file_fails_before_any_data_is_written(demo_source, tmp_path, capsys):
    from tiering.cli import main

    rules = rules_file(tmp_path / "rules", **{"value.pareto.b_share": 0.5})
    warehouse = tmp_path / "wh" / "tiering.duckdb"
    code = main(["run", "--source", str(demo_source), "--month", MONTH, "--warehouse", str(warehouse),
                 "--rules", str(rules)])
    err = capsys.readouterr().err
    assert code == 1
    assert "'value.pareto shares' must be strictly increasing" in err and len(err.strip().splitlines()) == 1
    assert not warehouse.exists() and not warehouse.parent.exists()
