"""Customer potential: expected purchases and revenue over the next months (buy-till-you-die).

For each (customer, month) the customer's own purchase history as of the month end is summarised
the way the models expect it (time unit: days; one purchase = one day with completed orders):

    frequency  repeat purchases (purchase days - 1)
    recency    days from the first to the last purchase day
    T          days from the first purchase day to the end of the month (exclusive bound)
    monetary   mean value of the repeat purchase days (reporting currency); NULL without repeats

and two models of the maintained-enough `lifetimes` library are fitted on the month's customers
(docs/potential.md says why this library and not pymc-marketing, with measurements):

* BG/NBD (`BetaGeoFitter`) for the purchase process: probability alive and the expected number
  of purchases over the horizon (12 months by default). Customers with one purchase only
  (frequency 0) and new customers (small T) are part of the fit, as the model intends.
* Gamma-Gamma (`GammaGammaFitter`, q > 1 enforced) for the spend per purchase, fitted on the
  customers with repeat purchases; a one-purchase customer gets the population mean spend,
  which is what the model's conditional expectation gives for frequency 0.

Expected revenue = expected purchases x expected spend per purchase. Credit notes (returns) are
no purchases: the models see completed orders only (PURCHASES_VIEW_SQL). Customers without any
completed order as of the month end have no purchase history: they get no row (the marts show
NULLs for them). The fits are deterministic (fixed starting point, no sampling; an optional
`max_customers` fit sample is chosen by a hash of the customer id), and the outputs are
rounded, so a month rerun or run out of order gives the same numbers.

`score_month` is the pipeline step (never fails the month because of the model: a failed or
skipped fit is recorded in `potential.fit_log` with the reason, and the month's rows stay
empty); `backtest` / `cli_backtest` compare the model with the hold-out months of a source.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from tiering.errors import TieringError
from tiering.pseudonym import refresh_approver_keys
from tiering.runspec import RunSpec, add_months, parse_month

log = logging.getLogger(__name__)

MODEL_NAME = "bgnbd+gammagamma"
NO_DROPOUT_A = 1e-4   # BG/NBD dropout parameter a below this: no dropout found (see predict)

DEFAULTS = {"enabled": True, "horizon_months": 12, "penalizer_coef": 0.001, "min_customers": 20,
            "max_customers": 200_000}

DDL = [
    "create schema if not exists potential",
    """create table if not exists potential.customer_potential (
        customer_id varchar not null, month date not null, frequency integer, recency double,
        t double, monetary double, p_alive double, expected_purchases_12m double,
        expected_revenue_12m double, horizon_months integer, model varchar, fit_status varchar,
        run_id varchar)""",
    """create table if not exists potential.fit_log (
        run_id varchar not null, month date not null, status varchar not null, message varchar,
        customers bigint, seconds double, params json, logged_at timestamp)""",
    """create table if not exists potential.customer_keys (
        customer_id varchar not null, customer_key varchar not null)""",
]

# The summary of purchase histories, from a relation `orders` (customer_id, ordered_at, amount)
# of completed orders in the reporting currency. $1 = the observation end (exclusive).
SUMMARY_SQL = """
with purchase_days as (
    -- exact decimal sums: a float sum depends on the (parallel) order of addition, which would
    -- make reruns differ in the last bits and so in the fitted parameters
    select customer_id, cast(ordered_at as date) as purchase_day,
           sum(cast(amount as decimal(18, 4))) as day_value
    from orders
    where ordered_at < cast($1 as timestamp)
    group by customer_id, cast(ordered_at as date)
),

per_customer as (
    select
        customer_id,
        count(*) - 1 as frequency,
        date_diff('day', min(purchase_day), max(purchase_day)) as recency,
        date_diff('day', min(purchase_day), cast($1 as date)) as T,
        (sum(day_value) - arg_min(day_value, purchase_day)) / nullif(count(*) - 1, 0) as monetary
    from purchase_days
    group by customer_id
)

select customer_id, cast(frequency as integer) as frequency, cast(recency as double) as recency,
       cast(T as double) as T, cast(cast(monetary as decimal(18, 4)) as double) as monetary
from per_customer
order by customer_id
"""


# The purchases the models see: the completed orders as of the month end (the view `orders` of
# SUMMARY_SQL). Credit notes (returns booked as their own lines, amount zero or less) are no
# purchase: Gamma-Gamma needs a positive spend per purchase, and a return changes neither how often
# a customer buys nor when it last bought (docs/potential.md).
PURCHASES_VIEW_SQL = """create or replace temp view orders as
    select customer_id, ordered_at, amount_reporting as amount
    from intermediate.int_orders__in_reporting_currency
    where order_status = 'completed'"""


class PotentialFitError(TieringError):
    """The potential model could not be fitted (recorded in potential.fit_log, never fails a month)."""


def settings(rules) -> dict:
    """The rules file's `potential` section with defaults for keys (or the section) left out."""
    data = rules.data if hasattr(rules, "data") else rules
    return {**DEFAULTS, **(data.get("potential") or {})}


def horizon_days(period_end: date, months: int) -> int:
    """Days from an (exclusive) observation end to the end of the horizon of `months` months."""
    return (add_months(period_end, months) - period_end).days


def summarise(con: duckdb.DuckDBPyConnection, period_end: date) -> pd.DataFrame:
    """Purchase-history summary per customer from the relation `orders` visible on `con`."""
    return con.execute(SUMMARY_SQL, [period_end]).df()


def _stable_order(customer_ids: pd.Series) -> np.ndarray:
    """A pseudo-random but reproducible order of customers (hash of the id): the fit sample.
    The hash is the first 15 hex digits of the SHA-256 of the id, computed by DuckDB for all ids
    at once (a million ids: 0.4 s instead of 1.5 s of hashlib per id; the same order)."""
    frame = pd.DataFrame({"customer_id": customer_ids.astype(str).to_numpy(),
                          "position": np.arange(len(customer_ids))})
    with duckdb.connect() as con:
        con.register("frame", frame)
        hashes = con.execute("select ('0x' || left(sha256(customer_id), 15))::ubigint as hash "
                             "from frame order by position").fetchnumpy()["hash"]
    return np.argsort(np.asarray(hashes, dtype=np.uint64), kind="stable")


FIT_TOLERANCES = (1e-7, 1e-5)   # lifetimes' default, then a looser one (see _fit_bgnbd)


def _fit_bgnbd(fitter_class, sample: pd.DataFrame, penalizer_coef: float):
    """BG/NBD fit. When the history shows no dropout yet (a few months of data), the likelihood is
    flat as the dropout parameters go to 0 and the optimiser stops on "precision loss" at the
    default tolerance; one retry with a looser tolerance settles there. lifetimes prints the
    optimiser's state on failure: kept out of the step's log."""
    from lifetimes.utils import ConvergenceError

    args = (sample["frequency"].to_numpy(float), sample["recency"].to_numpy(float), sample["T"].to_numpy(float))
    for attempt, tol in enumerate(FIT_TOLERANCES):
        model = fitter_class(penalizer_coef=penalizer_coef)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return model.fit(*args, tol=tol)
        except ConvergenceError:
            if attempt == len(FIT_TOLERANCES) - 1:
                raise


@dataclass
class FittedModels:
    bgnbd: object
    gamma_gamma: object
    fitted_customers: int
    params: dict


def fit(summary: pd.DataFrame, penalizer_coef: float = DEFAULTS["penalizer_coef"],
        max_customers: int = 0) -> FittedModels:
    """Fit BG/NBD on every summarised customer (or a reproducible sample of `max_customers`) and
    Gamma-Gamma on those with repeat purchases of positive value. Raises PotentialFitError."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    sample = summary
    if max_customers and len(summary) > max_customers:
        sample = summary.iloc[_stable_order(summary["customer_id"])[:max_customers]]
    repeaters = sample[(sample["frequency"] > 0) & (sample["monetary"] > 0)]
    if len(repeaters) < 2:
        raise PotentialFitError(f"only {len(repeaters)} customer(s) with repeat purchases; "
                                f"Gamma-Gamma needs several")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bgnbd = _fit_bgnbd(BetaGeoFitter, sample, penalizer_coef)
            gamma_gamma = GammaGammaFitter(penalizer_coef=penalizer_coef)
            gamma_gamma.fit(repeaters["frequency"].to_numpy(float), repeaters["monetary"].to_numpy(float),
                            q_constraint=True)
        except Exception as exc:  # lifetimes raises ConvergenceError, ValueError, numpy errors
            raise PotentialFitError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
    params = {"bgnbd": {k: round(float(v), 8) for k, v in bgnbd.params_.items()},
              "gamma_gamma": {k: round(float(v), 8) for k, v in gamma_gamma.params_.items()}}
    if not all(math.isfinite(v) for part in params.values() for v in part.values()):
        raise PotentialFitError(f"fitted parameters are not finite: {params}")
    return FittedModels(bgnbd, gamma_gamma, len(sample), params)


def predict(models: FittedModels, summary: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """p_alive, expected purchases and expected revenue over `horizon` days per summarised customer
    (rounded, so that results are reproducible to the stored precision)."""
    f = summary["frequency"].to_numpy(float)
    r = summary["recency"].to_numpy(float)
    t = summary["T"].to_numpy(float)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p_alive = np.asarray(models.bgnbd.conditional_probability_alive(f, r, t), dtype=float)
        purchases = np.asarray(
            models.bgnbd.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t), dtype=float)
        params = models.params["bgnbd"]
        if params["a"] < NO_DROPOUT_A:
            # the fit found no dropout (typical with a few months of history): the BG/NBD
            # expectation is 0/0 in lifetimes' closed form; its limit is the NBD expectation
            limit = p_alive * (params["r"] + f) / (params["alpha"] + t) * horizon
            purchases = np.where(np.isfinite(purchases), purchases, limit)
        monetary = summary["monetary"].fillna(0).clip(lower=0).to_numpy(float)
        spend = np.asarray(models.gamma_gamma.conditional_expected_average_profit(f, monetary), dtype=float)
    out = summary.copy()
    out["p_alive"] = np.round(p_alive, 6)
    out["expected_purchases"] = np.round(purchases, 4)
    out["expected_spend_per_purchase"] = np.round(spend, 4)
    out["expected_revenue"] = np.round(purchases * spend, 2)
    if not np.isfinite(out[["p_alive", "expected_purchases", "expected_revenue"]].to_numpy()).all():
        raise PotentialFitError("the model produced non-finite predictions")
    return out


# --- the pipeline step -----------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def refresh_customer_keys(con: duckdb.DuckDBPyConnection) -> int:
    """Write the pseudonymous key of every customer known to staging (tiering.pseudonym): the CRM
    mart joins them, so no customer id has to leave the warehouse. A key depends on the id and
    the secret only, so the customers keyed already keep theirs and only new ones are keyed
    (one HMAC per customer in Python: 1M customers took 5.9 s every month), unless a stored key
    is not the one the current secret gives (the secret was changed): then every key is
    written again. Returns how many keys were written."""
    from tiering.pseudonym import customer_keys, stored_keys_current

    same_secret = stored_keys_current(con)
    ids = [r[0] for r in con.execute(
        "select distinct customer_id from intermediate.int_customers__as_of "
        + ("where customer_id not in (select customer_id from potential.customer_keys) " if same_secret else "")
        + "order by 1").fetchall()]
    if not ids:
        return 0
    keyed = pd.DataFrame({"customer_id": ids, "customer_key": customer_keys(ids)}, dtype=str)
    con.register("keyed", keyed)
    try:
        con.execute("begin transaction")
        con.execute("delete from potential.customer_keys where customer_id in (select customer_id from keyed)")
        con.execute("insert into potential.customer_keys select customer_id, customer_key from keyed")
        con.execute("commit")
    except duckdb.Error:
        con.execute("rollback")
        raise
    finally:
        con.unregister("keyed")
    return len(ids)


def score_month(spec: RunSpec, rules) -> dict:
    """The `score_potential` step: fit on the month's purchase histories and store the predictions
    in potential.customer_potential (delete + insert by month). A disabled, skipped or failed fit
    leaves the month's rows empty and is recorded in potential.fit_log; it never fails the run."""
    from tiering.warehouse import connect

    conf = settings(rules)
    con = connect(spec.warehouse)
    started = time.monotonic()
    status, message, customers, params, rows = "ok", "", 0, None, pd.DataFrame()
    try:
        for statement in DDL:
            con.execute(statement)
        refresh_customer_keys(con)
        refresh_approver_keys(con)   # the overrides' approvers, pseudonymous in the marts (tiering.pseudonym)
        if not conf["enabled"]:
            status, message = "skipped", "potential.enabled is false in the rules file"
        else:
            try:
                # amount_reporting is decimal(18, 4) already, the type the summary sums in (through
                # a double and back it gave the same sums, 2 s slower over 47M orders at 1M customers)
                con.execute(PURCHASES_VIEW_SQL)
                summary = summarise(con, spec.next_month)
                customers = len(summary)
                if customers < conf["min_customers"]:
                    status = "skipped"
                    message = (f"{customers} customer(s) with purchases, fewer than potential.min_customers "
                               f"= {conf['min_customers']}")
                else:
                    models = fit(summary, conf["penalizer_coef"], conf["max_customers"])
                    params = {**models.params, "fitted_customers": models.fitted_customers}
                    rows = predict(models, summary, horizon_days(spec.next_month, conf["horizon_months"]))
                    message = f"fitted on {models.fitted_customers} of {customers} customers"
            except (PotentialFitError, duckdb.Error) as exc:
                status, message, rows = "failed", str(exc)[:2000], pd.DataFrame()
        _store(con, spec, rows, conf, status)
        seconds = round(time.monotonic() - started, 3)
        con.execute("delete from potential.fit_log where run_id = ?", [spec.run_id])
        con.execute("insert into potential.fit_log values (?, ?, ?, ?, ?, ?, ?, ?)",
                    [spec.run_id, spec.month, status, message, customers, seconds,
                     json.dumps(params) if params else None, _now()])
    finally:
        con.close()
    log.info(f"potential {spec.month_text}: {status} ({message}); {len(rows)} customers scored in {seconds} s")
    return {"status": status, "message": message, "customers": customers, "scored": len(rows), "seconds": seconds}


def _store(con: duckdb.DuckDBPyConnection, spec: RunSpec, rows: pd.DataFrame, conf: dict, status: str) -> None:
    frame = pd.DataFrame({
        "customer_id": rows.get("customer_id", pd.Series(dtype=str)),
        "month": spec.month,
        "frequency": rows.get("frequency", pd.Series(dtype="int64")),
        "recency": rows.get("recency", pd.Series(dtype=float)),
        "T": rows.get("T", pd.Series(dtype=float)),
        "monetary": rows.get("monetary", pd.Series(dtype=float)),
        "p_alive": rows.get("p_alive", pd.Series(dtype=float)),
        "expected_purchases_12m": rows.get("expected_purchases", pd.Series(dtype=float)),
        "expected_revenue_12m": rows.get("expected_revenue", pd.Series(dtype=float)),
        "horizon_months": conf["horizon_months"],
        "model": MODEL_NAME,
        "fit_status": status,
        "run_id": spec.run_id,
    })
    con.register("scored", frame)
    try:
        con.execute("begin transaction")
        con.execute("delete from potential.customer_potential where month = ?", [spec.month])
        con.execute("""insert into potential.customer_potential
            select customer_id, cast(month as date), frequency, recency, T, monetary, p_alive,
                   expected_purchases_12m, expected_revenue_12m, horizon_months, model, fit_status, run_id
            from scored""")
        con.execute("commit")
    finally:
        con.unregister("scored")


# --- back-test -----------------------------------------------------------------------------

ORDERS_AS_OF_SQL = """
with versions as (
    select
        customer_id,
        order_id,
        try_cast(try_cast(ordered_at as timestamptz) as timestamp) as ordered_at,
        status,
        currency,
        try_cast(amount as decimal(18, 4)) as amount,
        try_cast(try_cast(updated_at as timestamptz) as timestamp) as updated_at
    from source_orders
),

latest as (
    select *
    from versions
    where updated_at < cast($1 as timestamp)
    qualify row_number() over (partition by order_id order by updated_at desc) = 1
),

known_customers as (
    select distinct customer_id from source_customers
    where try_cast(try_cast(updated_at as timestamptz) as timestamp) < cast($1 as timestamp)
)

select
    latest.customer_id,
    latest.ordered_at,
    cast(latest.amount * case when latest.currency = $2 then 1 else fx.rate end as double) as amount
from latest
left join (select currency, month, try_cast(rate_to_reporting as decimal(18, 8)) as rate
           from source_fx) as fx
    on fx.currency = latest.currency and fx.month = strftime(latest.ordered_at, '%Y-%m')
where latest.status = 'completed'
  and latest.ordered_at is not null
  and latest.amount >= 0
  and (latest.currency = $2 or fx.rate is not null)
  and latest.customer_id in (select customer_id from known_customers)
"""


def _source_orders(con: duckdb.DuckDBPyConnection, cutoff: date, currency: str) -> pd.DataFrame:
    return con.execute(ORDERS_AS_OF_SQL, [cutoff, currency]).df()


def _metrics(predicted: pd.Series, actual: pd.Series, ids: pd.Series, top_share: float = 0.2) -> dict:
    """Per-customer correlation, total error, and how much of the actual top share the predicted
    top share catches (top by value, ties by customer id)."""
    total_actual = float(actual.sum())
    total_pred = float(predicted.sum())
    n_top = max(1, math.ceil(top_share * len(actual)))
    frame = pd.DataFrame({"id": ids.to_numpy(), "p": predicted.to_numpy(), "a": actual.to_numpy()})
    top_pred = set(frame.sort_values(["p", "id"], ascending=[False, True]).head(n_top)["id"])
    top_actual = set(frame.sort_values(["a", "id"], ascending=[False, True]).head(n_top)["id"])
    corr = float(np.corrcoef(frame["p"], frame["a"])[0, 1]) if frame["p"].std() > 0 and frame["a"].std() > 0 \
        else float("nan")
    return {"correlation": round(corr, 4),
            "predicted_total": round(total_pred, 2), "actual_total": round(total_actual, 2),
            "total_error": round((total_pred - total_actual) / total_actual, 4) if total_actual else None,
            "top20_capture": round(len(top_pred & top_actual) / n_top, 4)}


def backtest(source: Path, calibration_end: date, holdout_months: int, rules) -> dict:
    """Fit on the source as known at the end of `calibration_end` and compare with what the
    calibration customers actually bought in the next `holdout_months` months (as known at the
    hold-out end), against the naive 'same as the last period' predictor."""
    from tiering.source import TABLES, check_source_dir, read_table, source_encoding

    if holdout_months < 1:
        raise TieringError(f"--holdout-months must be at least 1, got {holdout_months}")
    check_source_dir(source)
    conf = settings(rules)
    currency = rules.data["reporting_currency"]
    cal_cutoff = add_months(calibration_end, 1)
    holdout_end = add_months(cal_cutoff, holdout_months)
    naive_start = add_months(cal_cutoff, -holdout_months)
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        for name in ("orders", "customers", "fx_rates"):
            path = TABLES[name].path_in(source)
            table = read_table(TABLES[name], path, source_encoding(path.parent, name)) if path else None
            if table is None:
                con.execute("create table source_fx (currency varchar, month varchar, rate_to_reporting varchar)")
                continue
            con.register(f"source_{'fx' if name == 'fx_rates' else name}", table)
        calibration = _source_orders(con, cal_cutoff, currency)
        calibration = calibration[calibration["ordered_at"] < pd.Timestamp(cal_cutoff)]
        con.register("orders", calibration)
        summary = summarise(con, cal_cutoff)
        if len(summary) < conf["min_customers"]:
            raise TieringError(f"{source}: only {len(summary)} customers with purchases up to "
                               f"{calibration_end:%Y-%m}; choose a later --calibration-end")
        started = time.monotonic()
        models = fit(summary, conf["penalizer_coef"], conf["max_customers"])
        fit_seconds = round(time.monotonic() - started, 3)
        predicted = predict(models, summary, horizon_days(cal_cutoff, holdout_months))
        con.unregister("orders")

        later = _source_orders(con, holdout_end, currency)
        con.register("later", later)
        per_customer = con.execute("""
            with days as (
                select customer_id, cast(ordered_at as date) as purchase_day, sum(amount) as day_value
                from later group by all
            )
            select
                customer_id,
                count(*) as actual_purchases,
                sum(day_value) as actual_revenue
            from days
            where purchase_day >= $1 and purchase_day < $2
            group by customer_id
        """, [cal_cutoff, holdout_end]).df()
    finally:
        con.close()
    # naive "last period": what the customer bought in the last calibration months as known at the
    # calibration end (the same orders the model saw)
    naive_known = calibration[calibration["ordered_at"] >= pd.Timestamp(naive_start)].assign(
        day=lambda d: d["ordered_at"].dt.floor("D")).groupby(["customer_id", "day"])["amount"].sum().reset_index()
    naive = naive_known.groupby("customer_id").agg(naive_purchases=("day", "size"),
                                                   naive_revenue=("amount", "sum")).reset_index()
    frame = predicted.merge(per_customer[["customer_id", "actual_purchases", "actual_revenue"]],
                            on="customer_id", how="left").merge(naive, on="customer_id", how="left")
    frame = frame.fillna({"actual_purchases": 0, "actual_revenue": 0.0, "naive_purchases": 0, "naive_revenue": 0.0})
    ids = frame["customer_id"]
    result = {
        "calibration_end": f"{calibration_end:%Y-%m}", "holdout_months": holdout_months,
        "holdout": f"{cal_cutoff:%Y-%m} .. {add_months(holdout_end, -1):%Y-%m}",
        "customers": len(frame), "fitted_customers": models.fitted_customers, "fit_seconds": fit_seconds,
        "params": models.params,
        "model": {"purchases": _metrics(frame["expected_purchases"], frame["actual_purchases"], ids),
                  "revenue": _metrics(frame["expected_revenue"], frame["actual_revenue"], ids)},
        "naive": {"purchases": _metrics(frame["naive_purchases"].astype(float), frame["actual_purchases"], ids),
                  "revenue": _metrics(frame["naive_revenue"], frame["actual_revenue"], ids)},
    }
    return result


def format_backtest(result: dict) -> str:
    lines = [f"back-test: calibration up to {result['calibration_end']}, hold-out {result['holdout']} "
             f"({result['customers']} customers, fit {result['fit_seconds']} s)",
             f"{'':24}{'correlation':>12}{'predicted':>16}{'actual':>16}{'total error':>13}{'top-20% caught':>16}"]
    for who in ("model", "naive"):
        for what in ("purchases", "revenue"):
            m = result[who][what]
            err = "n/a" if m["total_error"] is None else f"{m['total_error']:+.1%}"
            lines.append(f"{who + ' ' + what:24}{m['correlation']:>12.3f}{m['predicted_total']:>16,.0f}"
                         f"{m['actual_total']:>16,.0f}{err:>13}{m['top20_capture']:>16.1%}")
    return "\n".join(lines)


def cli_backtest(args) -> None:
    """`tiering backtest-potential --source DIR --calibration-end YYYY-MM --holdout-months N`."""
    from tiering.rules import load_rules

    result = backtest(Path(args.source), parse_month(args.calibration_end), args.holdout_months,
                      load_rules(args.rules))
    print(json.dumps(result, indent=2) if getattr(args, "json", False) else format_backtest(result))
