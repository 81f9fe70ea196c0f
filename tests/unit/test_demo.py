"""Tests of the demo source generator (tiering.demo)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiering import demo

FILES = ("customers", "orders", "invoices", "payments", "fx_rates")
EXPECTED_COLUMNS = {
    "customers": ["customer_id", "name", "email", "phone", "region", "industry", "customer_kind",
                  "parent_customer_id", "created_at", "updated_at"],
    "orders": ["order_id", "customer_id", "ordered_at", "status", "currency", "amount", "cost", "updated_at",
               "original_order_id"],
    "invoices": ["invoice_id", "order_id", "customer_id", "issued_on", "due_on", "amount_due", "currency",
                 "updated_at"],
    "payments": ["payment_id", "invoice_id", "paid_at", "amount", "updated_at"],
    "fx_rates": ["currency", "month", "rate_to_reporting"],
}
TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$"
AMOUNT = r"^\d+\.\d{2}$"


def read(directory, name: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    counts = demo.generate(directory)
    return directory, counts, {name: read(directory, name) for name in FILES}


def latest(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Latest version per id (rows with a parseable updated_at)."""
    frame = frame.assign(_updated=pd.to_datetime(frame["updated_at"], format="%Y-%m-%dT%H:%M:%S", errors="coerce"))
    frame = frame[frame["_updated"].notna()]
    return frame.sort_values([key, "_updated"], kind="stable").drop_duplicates(key, keep="last")


def valid_orders(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Latest version of the orders that pass every check, with the amount in EUR."""
    orders = latest(tables["orders"], "order_id")
    orders = orders[orders["customer_id"].isin(tables["customers"]["customer_id"])
                    & orders["ordered_at"].str.match(TIMESTAMP)
                    & orders["amount"].str.match(AMOUNT)
                    & orders["currency"].isin(["EUR", "USD", "GBP"])].copy()
    orders = orders[pd.to_datetime(orders["ordered_at"], format="%Y-%m-%dT%H:%M:%S", errors="coerce").notna()]
    fx = tables["fx_rates"].assign(rate=lambda f: f["rate_to_reporting"].astype(float))
    orders["month"] = orders["ordered_at"].str[:7]
    orders = orders.merge(fx[["currency", "month", "rate"]], on=["currency", "month"], how="left")
    orders["rate"] = orders["rate"].fillna(1.0)
    orders["amount_eur"] = orders["amount"].astype(float) * orders["rate"]
    return orders


# --- determinism -----------------------------------------------------------------

def test_same_seed_gives_identical_bytes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    counts = demo.generate(first, customers=200, months=6, seed=7)
    assert demo.generate(second, customers=200, months=6, seed=7) == counts
    for name in FILES:
        assert (first / f"{name}.csv").read_bytes() == (second / f"{name}.csv").read_bytes(), name


def test_different_seed_gives_different_orders(tmp_path):
    demo.generate(tmp_path / "a", customers=200, months=6, seed=7)
    demo.generate(tmp_path / "b", customers=200, months=6, seed=8)
    assert (tmp_path / "a" / "orders.csv").read_bytes() != (tmp_path / "b" / "orders.csv").read_bytes()


def test_rewrites_existing_files(tmp_path):
    demo.generate(tmp_path, customers=100, months=3, seed=1)
    counts = demo.generate(tmp_path, customers=60, months=2, seed=2)
    assert len(read(tmp_path, "customers")) == counts["customers.csv"]


def test_parquet_has_same_content_as_string_columns(tmp_path):
    demo.generate(tmp_path / "csv", customers=100, months=4, seed=3)
    counts = demo.generate(tmp_path / "pq", customers=100, months=4, seed=3, fmt="parquet")
    assert set(counts) == {f"{name}.parquet" for name in FILES}
    for name in FILES:
        frame = pd.read_parquet(tmp_path / "pq" / f"{name}.parquet")
        assert all(str(t) in ("object", "str", "string") for t in frame.dtypes), name
        expected = read(tmp_path / "csv", name)
        pd.testing.assert_frame_equal(frame.astype(object), expected.astype(object), check_dtype=False)


# --- format --------------------------------------------------------------------

def test_columns_and_counts(source):
    directory, counts, tables = source
    assert counts == {f"{name}.csv": len(tables[name]) for name in FILES}
    for name in FILES:
        header = (directory / f"{name}.csv").read_text(encoding="utf-8").splitlines()[0]
        assert header.split(",") == EXPECTED_COLUMNS[name]


def test_ids_and_value_formats(source):
    _, _, t = source
    assert t["customers"]["customer_id"].str.match(r"^C\d{6}$").all()
    assert t["invoices"]["invoice_id"].str.match(r"^I\d{7}$").all()
    assert t["orders"]["order_id"].str.match(r"^[OR]\d{7}$").all()            # R: credit notes
    assert t["payments"]["payment_id"].str.match(r"^P\d{7}$").all()
    assert t["customers"]["customer_kind"].isin(["individual", "organisation"]).all()
    assert t["orders"]["status"].isin(["completed", "cancelled", "returned", "credit_note"]).all()
    for name, column in [("invoices", "amount_due"), ("payments", "amount")]:
        assert t[name][column].str.match(AMOUNT).all(), name
    costs = t["orders"]["cost"]
    assert costs[costs != ""].str.match(AMOUNT).all()
    assert t["invoices"]["issued_on"].str.match(r"^\d{4}-\d{2}-\d{2}$").all()
    fx = t["fx_rates"]
    assert set(fx["currency"]) >= {"USD", "GBP"}
    assert (fx[fx["currency"] == "EUR"]["rate_to_reporting"] == "1").all()
    assert fx.groupby("currency")["month"].nunique().min() == 15


def test_regular_timestamps_inside_range(source):
    _, _, t = source
    for name, columns in [("customers", ["created_at", "updated_at"]), ("orders", ["ordered_at", "updated_at"]),
                          ("invoices", ["updated_at"]), ("payments", ["paid_at", "updated_at"])]:
        for column in columns:
            values = pd.to_datetime(t[name][column], format="%Y-%m-%dT%H:%M:%S", errors="coerce").dropna()
            assert values.min() >= pd.Timestamp("2024-01-01"), (name, column)
            assert values.max() < pd.Timestamp("2025-04-01"), (name, column)


# --- shape -----------------------------------------------------------------------

def test_volume_and_customer_shape(source):
    _, _, t = source
    customers = latest(t["customers"], "customer_id")
    assert len(customers) == 500
    assert 11_000 < len(t["orders"]) < 20_000
    organisations = customers[customers["customer_kind"] == "organisation"]
    assert 0.5 < len(organisations) / len(customers) < 0.7
    initial = (customers["created_at"] < "2024-02").mean()
    assert 0.65 < initial < 0.75
    assert t["customers"]["customer_id"].duplicated().sum() > 20       # second versions
    members = customers[customers["parent_customer_id"] != ""]
    assert len(members) >= 1
    parents = customers.set_index("customer_id").loc[members["parent_customer_id"]]
    assert (parents["customer_kind"] == "organisation").all()
    assert (parents["parent_customer_id"] == "").all()


def test_revenue_is_concentrated(source):
    _, _, t = source
    orders = valid_orders(t)
    revenue = orders[orders["status"] == "completed"].groupby("customer_id")["amount_eur"].sum()
    revenue = revenue[revenue > 0].sort_values(ascending=False)
    top = int(np.ceil(len(revenue) * 0.2))
    share = revenue.iloc[:top].sum() / revenue.sum()
    assert 0.60 <= share <= 0.95, share


def test_order_mix(source):
    _, _, t = source
    orders = latest(t["orders"], "order_id")
    status = orders["status"].value_counts(normalize=True)
    assert status["completed"] > 0.85 and status["cancelled"] > 0.01 and status["returned"] > 0.01
    currency = orders["currency"].value_counts(normalize=True)
    assert currency["EUR"] > 0.75
    assert 0.7 < (orders["cost"] != "").mean() < 0.9
    months = orders["ordered_at"].str[:7].value_counts()
    assert months["2024-12"] > months["2024-08"]                        # seasonality


def test_order_versions_and_late_rows(source):
    _, _, t = source
    orders = t["orders"].drop_duplicates()
    versions = orders.groupby("order_id").size()
    assert (versions == 2).sum() > 50
    corrected = orders[orders["order_id"].isin(versions[versions == 2].index)]
    changed = corrected.groupby("order_id").agg(statuses=("status", "nunique"), amounts=("amount", "nunique"))
    assert (changed["statuses"] == 2).any() and ((changed["statuses"] == 1) & (changed["amounts"] == 2)).any()
    ordered = pd.to_datetime(orders["ordered_at"], format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    updated = pd.to_datetime(orders["updated_at"], format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    first = ~orders["order_id"].duplicated()
    assert ((updated - ordered)[first] >= pd.Timedelta(days=30)).sum() > 50


def test_credit_notes_return_earlier_orders(source):
    _, _, t = source
    orders = t["orders"]
    notes = orders[orders["status"] == "credit_note"]
    sales = orders[orders["order_id"].str.startswith("O")].drop_duplicates("order_id").set_index("order_id")
    assert (orders["original_order_id"][orders["status"] != "credit_note"] == "").all()
    assert notes["order_id"].str.match(r"^R\d{7}$").all() and notes["order_id"].is_unique
    assert 0.01 < len(notes) / len(sales) < 0.03
    negative = notes[notes["amount"].str.startswith("-")]
    assert len(notes) - len(negative) == 1                               # one positive: a dirty row
    linked = negative[negative["original_order_id"] != ""]
    assert 0.9 < len(linked) / len(negative) < 1.0                      # a few without original_order_id
    sale = sales.loc[linked["original_order_id"]]
    assert (sale["status"] == "completed").all()
    assert (sale["customer_id"].to_numpy() == linked["customer_id"].to_numpy()).all()
    assert (sale["currency"].to_numpy() == linked["currency"].to_numpy()).all()
    assert (linked["ordered_at"].to_numpy() > sale["ordered_at"].to_numpy()).all()
    returned = -linked["amount"].astype(float).to_numpy()
    assert (returned > 0).all() and (returned <= sale["amount"].astype(float).to_numpy()).all()
    full = returned == sale["amount"].astype(float).to_numpy()
    assert 0.2 < full.mean() < 0.4                                       # full returns, the others partial
    later = linked["ordered_at"].str[:7].to_numpy() > sale["ordered_at"].str[:7].to_numpy()
    assert 0.05 < later.mean() < 0.4                                     # a few in a later month than the sale
    # a credit note's cost is the returned goods' cost: given when the order's cost is, never negative
    assert ((linked["cost"] == "").to_numpy() == (sale["cost"] == "").to_numpy()).all()
    assert linked["cost"][linked["cost"] != ""].str.match(AMOUNT).all()


def test_dirty_rows_of_every_kind(source):
    _, _, t = source
    orders, payments = t["orders"], t["payments"]
    assert orders.duplicated().any()
    assert payments.duplicated().any()
    assert (orders["amount"].str.startswith("-") & (orders["status"] != "credit_note")).any()
    assert (orders["amount"] == "").any()
    assert (orders["customer_id"] == "C999999X").any()
    assert (orders["currency"] == "XXX").any()
    bad_dates = pd.to_datetime(orders["ordered_at"], format="%Y-%m-%dT%H:%M:%S", errors="coerce").isna()
    assert bad_dates.sum() >= 1
    assert (~orders["ordered_at"].str.match(TIMESTAMP)).any()
    bad_updates = pd.to_datetime(orders["updated_at"], format="%Y-%m-%dT%H:%M:%S", errors="coerce").isna()
    assert bad_updates.sum() == 1
    assert (~payments["invoice_id"].isin(t["invoices"]["invoice_id"])).any()
    for name in ("orders", "payments"):
        dirty_share = (t[name].duplicated()).mean()
        assert dirty_share < 0.01, name


def test_invoices_follow_completed_orders(source):
    _, _, t = source
    invoices = t["invoices"]
    assert invoices["invoice_id"].is_unique and invoices["order_id"].is_unique
    first_versions = t["orders"].drop_duplicates("order_id", keep="first").set_index("order_id")
    assert (first_versions.loc[invoices["order_id"], "status"] == "completed").all()
    issued = pd.to_datetime(invoices["issued_on"])
    assert ((pd.to_datetime(invoices["due_on"]) - issued) == pd.Timedelta(days=30)).all()


def test_payment_behaviours_visible(source):
    _, _, t = source
    invoices = t["invoices"].set_index("invoice_id")
    payments = t["payments"].drop_duplicates()
    payments = payments[payments["invoice_id"].isin(invoices.index)]
    paid = payments.groupby("invoice_id").agg(last_paid=("paid_at", "max"), parts=("payment_id", "size"))
    paid = paid.join(invoices[["due_on", "customer_id"]])
    days_late = (pd.to_datetime(paid["last_paid"]) - pd.to_datetime(paid["due_on"])).dt.days
    assert (days_late < 0).mean() > 0.4                                   # mostly on time
    assert (days_late.between(5, 45)).any()                               # late payers
    assert (days_late > 60).any()                                         # arrears
    assert (paid["parts"] == 2).any()                                     # partial payments
    old = invoices[invoices["due_on"] < "2024-06-01"]
    never_paid = old[~old.index.isin(paid.index)]
    assert len(never_paid) > 0
    # a customer who never pays: several old invoices and not one payment
    silent = never_paid.groupby("customer_id").size()
    paying_customers = set(paid["customer_id"])
    assert any(c not in paying_customers for c in silent[silent >= 3].index)


def test_small_inputs_work(tmp_path):
    counts = demo.generate(tmp_path, customers=3, months=1, seed=0)
    assert counts["customers.csv"] >= 3
    assert counts["fx_rates.csv"] == 3
