"""Deterministic demo source data for the tiering pipeline.

`generate(out_dir, ...)` writes the five source files of the public source
format (customers, orders, invoices, payments, fx_rates; CSV or Parquet with
every column as text) with a realistic shape:

* Customers: ~70% exist from the start (created in the first days of the
  first month), the rest arrive spread over the later months. ~60% are
  organisations, ~2% of those belong to a group (parent_customer_id points at
  an earlier organisation without a parent). ~10% get a second version row
  later (region or industry changed). Names, e-mails and phones are fake and
  built from small fixed lists.
* Orders: ~50 per customer over 24 months on average. The order rate per
  customer is log-normal, the order value is Pareto (alpha 1.2), so roughly
  20% of customers make ~80% of the revenue. Seasonal peak in November and
  December, dip in July and August. ~15% of customers lapse (stop ordering
  after a random month); new customers order only after their created_at.
  Status ~95% completed / 3% cancelled / 2% returned; billing currency per
  customer, ~92% EUR / 5% USD / 3% GBP; cost present for ~80% of orders.
  ~2% arrive late (updated_at 1-2 months after ordered_at), ~2% get a
  correction row (same order_id, later updated_at: cancelled, returned or a
  partial return with a reduced amount).
* Credit notes: ~2% of the other completed orders are returned the way ERP
  and shop exports book it, as a line of their own (status `credit_note`, id
  `R...`, negative amount, the returned goods' cost when the order has one,
  `original_order_id` pointing at the order; ~5% leave it empty). ~30% are
  full returns, the others return 10-70%; a credit note is dated 1 hour to 10
  days after the order, so a few fall in a later month; those after the end of
  the range are not written. Each month's credit notes follow its orders in
  orders.csv. They come from a random stream of their own, so every other row
  is what it would be without them.
* Invoices: one per order placed as completed, issued on the order date, due
  30 days later, updated_at at the end of the issue day.
* Payments: each customer has a behaviour: ~60% on time (0-25 days after
  issue), ~20% late (5-45 days after due), ~8% chronic arrears (40-120 days
  after due, often in two partial payments), ~2% never pay, ~10% mixed.
  Payments falling after the end of the range are not written.
* FX rates: USD, GBP (monthly drift) and EUR (exactly "1") for every month.
* Dirty rows (about 0.1-0.2% each, at least one of each kind when there are
  at least 50 customers): exact duplicate lines (orders, payments), negative
  order amounts, orders of an unknown customer (`C999999X`), unparseable
  ordered_at (`2024-13-15T...`, `15/03/2024`), unknown currency `XXX`, an
  empty order amount, payments of an unknown invoice (`I9999999X`), exactly
  one order with an unparseable updated_at (day 32) and exactly one credit note
  with a positive amount. Every other dirty row has
  a valid updated_at inside the range.

Every timestamp of a regular row lies in [start_month, start_month + months).
Same arguments give byte-identical files: randomness comes only from numpy
generators seeded with (seed, stream, month); amounts are integer cents
formatted as text; rows are written in id order (versions of one id by
updated_at). The work is vectorised and streamed one month at a time, so
memory stays bounded by one month of orders.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REPORTING_CURRENCY = "EUR"

# --- shape parameters -------------------------------------------------------
ORDERS_PER_CUSTOMER_MONTH = 50 / 24          # average over all customers and months
INITIAL_CUSTOMER_SHARE = 0.70
INITIAL_CREATION_WINDOW_S = 3 * 86400        # initial customers: first 3 days of the range
ORGANISATION_SHARE = 0.60
GROUP_MEMBER_SHARE = 0.02                    # of organisations
CUSTOMER_CHANGE_SHARE = 0.10
LAPSE_SHARE = 0.15
SPEND_PARETO_ALPHA = 1.2
SPEND_MIN_EUR = 60.0                         # minimum of a customer's typical order value
SPEND_MAX_EUR = 50_000.0                     # cap of a customer's typical order value
ORDER_VALUE_SIGMA = 0.5                      # log-normal noise around the typical value
ORDER_RATE_SIGMA = 0.8                       # log-normal spread of the order rate
SEASON = np.array([0.95, 0.95, 1.0, 1.0, 1.0, 0.95, 0.80, 0.75, 1.0, 1.05, 1.30, 1.45])  # Jan..Dec

CURRENCIES = ("EUR", "USD", "GBP")
CURRENCY_SHARES = (0.92, 0.05, 0.03)
FX_START = {"USD": 0.92, "GBP": 1.17}        # rate_to_reporting in the first month
FX_MONTHLY_SIGMA = 0.012

STATUSES = ("completed", "cancelled", "returned")   # drawn for orders (a credit note is a line of its own)
CREDIT_NOTE_STATUS = "credit_note"
STATUS_SHARES = (0.95, 0.03, 0.02)
COST_SHARE = 0.80
COST_RATIO = (0.60, 0.85)
LATE_ORDER_SHARE = 0.02
LATE_ORDER_DELAY_DAYS = (30, 61)
CORRECTION_SHARE = 0.02
CORRECTION_DELAY_DAYS = (2, 45)
CORRECTION_KINDS = ("cancelled", "returned", "partial")
CORRECTION_KIND_SHARES = (0.40, 0.25, 0.35)
CORRECTION_STATUS = ("cancelled", "returned", "completed")   # new status per correction kind
PARTIAL_RETURN_KEEP = (0.30, 0.90)           # share of the amount kept by a partial return
CREDIT_NOTE_SHARE = 0.02                     # of the completed orders that get no correction row
CREDIT_NOTE_FULL_SHARE = 0.30                # full returns; the others return a part:
CREDIT_NOTE_RETURNED = (0.10, 0.70)          # share of the amount returned by a partial credit note
CREDIT_NOTE_DELAY_S = (3600, 10 * 86400)     # from the order to its credit note
CREDIT_NOTE_NO_ORIGINAL_SHARE = 0.05         # credit notes without original_order_id

PAYMENT_TERMS_DAYS = 30
BEHAVIOURS = ("on_time", "late", "arrears", "never", "mixed")
BEHAVIOUR_SHARES = (0.60, 0.20, 0.08, 0.02, 0.10)
MIXED_SHARES = (0.55, 0.30, 0.10, 0.05)      # a mixed payer's invoice: on_time, late, arrears, never
PAY_DAYS_AFTER_ISSUE = {                     # [low, high] days after the issue date
    "on_time": (0, 25),
    "late": (PAYMENT_TERMS_DAYS + 5, PAYMENT_TERMS_DAYS + 45),
    "arrears": (PAYMENT_TERMS_DAYS + 40, PAYMENT_TERMS_DAYS + 120),
}
SPLIT_SHARE = {"on_time": 0.03, "late": 0.03, "arrears": 0.35}   # invoices paid in two parts
SPLIT_FIRST_PART = (0.30, 0.70)
SPLIT_GAP_DAYS = (10, 60)

DIRTY_MIN_CUSTOMERS = 50                     # from here on, at least one row of each dirty kind
DIRTY_ORDER_SHARE = 0.001                    # per kind of dirty order
DUPLICATE_SHARE = 0.002
UNKNOWN_CUSTOMER_ID = "C999999X"
UNKNOWN_INVOICE_ID = "I9999999X"
UNKNOWN_CURRENCY = "XXX"
DIRTY_ORDER_KINDS = ("negative_amount", "unknown_customer", "bad_ordered_at", "unknown_currency",
                     "empty_amount", "bad_updated_at")

REGIONS = ("North", "South", "East", "West", "Central")
INDUSTRIES = ("Retail", "Manufacturing", "Healthcare", "Technology", "Hospitality", "Logistics")
FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas",
               "Karin", "Lukas", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sven", "Tara", "Victor")
LAST_NAMES = ("Bakker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Jansen",
              "Kowalski", "Larsen", "Moreau", "Novak", "Peters", "Rossi", "Schmidt", "Visser")
COMPANY_WORDS = ("Alpine", "Blue River", "Cedar", "Delta", "Evergreen", "Harbor", "Iron Bridge",
                 "Lakeside", "Northwind", "Oak", "Silver", "Summit")
COMPANY_TRADES = ("Foods", "Logistics", "Systems", "Textiles", "Motors", "Pharma", "Works", "Supplies")
COMPANY_SUFFIXES = ("Ltd", "GmbH", "BV", "SA", "AG", "Group")

COLUMNS = {
    "customers": ("customer_id", "name", "email", "phone", "region", "industry", "customer_kind",
                  "parent_customer_id", "created_at", "updated_at"),
    "orders": ("order_id", "customer_id", "ordered_at", "status", "currency", "amount", "cost",
               "updated_at", "original_order_id"),
    "invoices": ("invoice_id", "order_id", "customer_id", "issued_on", "due_on", "amount_due",
                 "currency", "updated_at"),
    "payments": ("payment_id", "invoice_id", "paid_at", "amount", "updated_at"),
    "fx_rates": ("currency", "month", "rate_to_reporting"),
}

DAY = 86400
HOUR = 3600

# independent random streams (the month is added to the seed of the per-month streams)
_CUSTOMERS, _FX, _PLAN, _ORDERS, _PAYMENTS, _CREDIT_NOTES = range(6)


# --- public API ---------------------------------------------------------------

def generate(out_dir, customers: int = 500, months: int = 15, seed: int = 42,
             start_month: str = "2024-01", fmt: str = "csv") -> dict[str, int]:
    """Write a deterministic demo source directory; return {file_name: row_count}.

    out_dir is created if needed; the five files are overwritten. customers and months
    must be >= 1, seed >= 0, start_month 'YYYY-MM', fmt 'csv' or 'parquet' (every column
    a string). Row counts exclude the header line.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if customers < 1 or months < 1 or seed < 0:
        raise ValueError("customers and months must be at least 1, seed at least 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    cal = _Calendar.build(start_month, months, seed)
    people = _make_customers(customers, cal, np.random.default_rng([seed, _CUSTOMERS]))
    total_orders = sum(int(_plan_month(people, cal, m, seed).sum()) for m in range(months))
    # upper bounds: dirty orders add ~0.5%, an invoice has at most two payments
    widths = _IdWidths(customer=max(6, len(str(customers))),
                       order=max(7, len(str(int(total_orders * 1.05) + 100))),
                       payment=max(7, len(str(int(total_orders * 2.1) + 100))))

    counts: dict[str, int] = {}
    with _Writer(out_dir, "customers", fmt, counts) as w:
        w.write(_customer_table(people, cal, widths, np.random.default_rng([seed, _CUSTOMERS, 1])))
    with _Writer(out_dir, "fx_rates", fmt, counts) as w:
        w.write(_fx_table(cal))
    _write_activity(out_dir, fmt, counts, people, cal, widths, seed)
    return {f"{name}.{fmt}": counts[f"{name}.{fmt}"] for name in COLUMNS}


# --- calendar and fx ------------------------------------------------------------

@dataclass(frozen=True)
class _Calendar:
    month_labels: list[str]          # "YYYY-MM" of every month of the range
    starts: np.ndarray               # epoch seconds of each month start, plus the range end
    season: np.ndarray               # seasonal order-rate factor per month
    fx: np.ndarray                   # [currency, month] rate_to_reporting (rounded to 4 decimals)

    @property
    def months(self) -> int:
        return len(self.month_labels)

    @property
    def end(self) -> int:
        return int(self.starts[-1])

    @classmethod
    def build(cls, start_month: str, months: int, seed: int) -> _Calendar:
        first = np.datetime64(start_month, "M")
        month_range = first + np.arange(months + 1)
        starts = month_range.astype("datetime64[s]").astype(np.int64)
        season = SEASON[month_range[:-1].astype(np.int64) % 12]
        rng = np.random.default_rng([seed, _FX])
        fx = np.ones((len(CURRENCIES), months))
        for i, cur in enumerate(CURRENCIES[1:], start=1):
            steps = rng.normal(0.0, FX_MONTHLY_SIGMA, months)
            steps[0] = 0.0
            fx[i] = np.round(FX_START[cur] * np.exp(np.cumsum(steps)), 4)
        labels = [str(m) for m in month_range[:-1]]
        return cls(labels, starts, season, fx)


def _fx_table(cal: _Calendar) -> pa.Table:
    rows = [(cur, label, "1" if cur == REPORTING_CURRENCY else f"{cal.fx[i, m]:.4f}")
            for i, cur in sorted(enumerate(CURRENCIES), key=lambda x: x[1])
            for m, label in enumerate(cal.month_labels)]
    return pa.table({name: [r[j] for r in rows] for j, name in enumerate(COLUMNS["fx_rates"])})


@dataclass(frozen=True)
class _IdWidths:
    """Digits of the zero-padded ids (invoices share the order width)."""
    customer: int
    order: int
    payment: int


# --- customers ------------------------------------------------------------------

@dataclass
class _Customers:
    created_at: np.ndarray           # epoch seconds, ascending (ids follow creation)
    arrival_month: np.ndarray
    last_month: np.ndarray           # last month with orders (lapsed customers stop early)
    organisation: np.ndarray         # bool
    parent: np.ndarray               # index of the parent customer or -1
    region: np.ndarray
    industry: np.ndarray
    currency: np.ndarray             # index into CURRENCIES
    order_value_eur: np.ndarray      # typical order value
    order_rate: np.ndarray           # expected orders per month (before seasonality)
    behaviour: np.ndarray            # index into BEHAVIOURS

    @property
    def count(self) -> int:
        return len(self.created_at)


def _make_customers(n: int, cal: _Calendar, rng: np.random.Generator) -> _Customers:
    created_at, arrival = _arrivals(n, cal, rng)
    organisation = rng.random(n) < ORGANISATION_SHARE
    last_month = np.full(n, cal.months - 1)
    lapsing = (rng.random(n) < LAPSE_SHARE) & (arrival < cal.months - 1)
    last_month[lapsing] = rng.integers(arrival[lapsing], cal.months - 1)
    value = SPEND_MIN_EUR * (1.0 + rng.pareto(SPEND_PARETO_ALPHA, n))
    people = _Customers(
        created_at=created_at,
        arrival_month=arrival,
        last_month=last_month,
        organisation=organisation,
        parent=_group_parents(organisation, rng),
        region=rng.integers(0, len(REGIONS), n),
        industry=rng.integers(0, len(INDUSTRIES), n),
        currency=rng.choice(len(CURRENCIES), n, p=CURRENCY_SHARES),
        order_value_eur=np.minimum(value, SPEND_MAX_EUR),
        order_rate=rng.lognormal(0.0, ORDER_RATE_SIGMA, n),
        behaviour=rng.choice(len(BEHAVIOURS), n, p=BEHAVIOUR_SHARES),
    )
    _calibrate_order_rate(people, cal)
    return people


def _arrivals(n: int, cal: _Calendar, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Creation times (ascending) and arrival month of every customer."""
    initial = n if cal.months == 1 else int(round(n * INITIAL_CUSTOMER_SHARE))
    arrival = np.concatenate([np.zeros(initial, np.int64),
                              rng.integers(1, max(cal.months, 2), n - initial)])
    month_start = cal.starts[arrival]
    window = np.where(arrival == 0, INITIAL_CREATION_WINDOW_S,
                      cal.starts[arrival + 1] - month_start - HOUR)
    created_at = month_start + (rng.random(n) * window).astype(np.int64)
    order = np.argsort(created_at, kind="stable")
    return created_at[order], arrival[order]


def _group_parents(organisation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """~2% of organisations point at an earlier organisation that has no parent."""
    parent = np.full(len(organisation), -1)
    orgs = np.flatnonzero(organisation)
    members = int(round(len(orgs) * GROUP_MEMBER_SHARE))
    if members == 0 or len(orgs) < 2 * members:
        return parent
    heads = orgs[:members]                    # the earliest organisations head the groups
    children = rng.choice(orgs[members:], members, replace=False)
    parent[children] = heads[rng.integers(0, members, members)]
    return parent


def _calibrate_order_rate(people: _Customers, cal: _Calendar) -> None:
    """Scale the rates so that the expected order count is ORDERS_PER_CUSTOMER_MONTH * n * months."""
    expected = sum(cal.season[m] * people.order_rate[_active(people, m)].sum() for m in range(cal.months))
    target = ORDERS_PER_CUSTOMER_MONTH * people.count * cal.months
    if expected > 0:
        people.order_rate *= target / expected


def _active(people: _Customers, m: int) -> np.ndarray:
    return (people.arrival_month <= m) & (m <= people.last_month)


def _customer_table(people: _Customers, cal: _Calendar, widths: _IdWidths,
                    rng: np.random.Generator) -> pa.Table:
    n = people.count
    first, last = rng.integers(0, len(FIRST_NAMES), n), rng.integers(0, len(LAST_NAMES), n)
    word, trade = rng.integers(0, len(COMPANY_WORDS), n), rng.integers(0, len(COMPANY_TRADES), n)
    suffix = rng.integers(0, len(COMPANY_SUFFIXES), n)
    number = _text(np.arange(1, n + 1))
    org = pa.array(people.organisation)

    person_name = _join(_pick(FIRST_NAMES, first), " ", _pick(LAST_NAMES, last))
    company = _join(_pick(COMPANY_WORDS, word), " ", _pick(COMPANY_TRADES, trade), " ",
                    _pick(COMPANY_SUFFIXES, suffix))
    person_mail = _join(_pick([f.lower() for f in FIRST_NAMES], first), ".",
                        _pick([s.lower() for s in LAST_NAMES], last), number, "@example.com")
    company_mail = _join("accounts@", _pick([_slug(w) for w in COMPANY_WORDS], word),
                         _pick([_slug(t) for t in COMPANY_TRADES], trade), number, ".example.com")
    phone = _join("+31 6 ", _text(rng.integers(0, 10**8, n), 8))
    parent = np.maximum(people.parent, 0) + 1
    base = {
        "customer_id": _ids("C", np.arange(1, n + 1), widths.customer),
        "name": pc.if_else(org, company, person_name),
        "email": pc.if_else(org, company_mail, person_mail),
        "phone": phone,
        "region": _pick(REGIONS, people.region),
        "industry": _pick(INDUSTRIES, people.industry),
        "customer_kind": pc.if_else(org, "organisation", "individual"),
        "parent_customer_id": pc.if_else(pa.array(people.parent >= 0), _ids("C", parent, widths.customer), ""),
        "created_at": _timestamps(people.created_at),
        "updated_at": _timestamps(people.created_at),
    }
    first_version = pa.table(base)
    changed, changed_at, new_region, new_industry = _customer_changes(people, cal, rng)
    second = pa.table({**{c: first_version[c].take(pa.array(changed)) for c in first_version.column_names},
                       "region": _pick(REGIONS, new_region),
                       "industry": _pick(INDUSTRIES, new_industry),
                       "updated_at": _timestamps(changed_at)})
    both = pa.concat_tables([first_version, second])
    order = np.lexsort((np.r_[np.zeros(n, int), np.ones(len(changed), int)], np.r_[np.arange(n), changed]))
    return both.take(pa.array(order))


def _customer_changes(people: _Customers, cal: _Calendar, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """~10% of customers get a later version with a changed region or industry."""
    room = cal.end - people.created_at
    changed = np.flatnonzero((rng.random(people.count) < CUSTOMER_CHANGE_SHARE) & (room > 2 * DAY))
    changed_at = (people.created_at[changed] + DAY
                  + (rng.random(len(changed)) * (room[changed] - 2 * DAY)).astype(np.int64))
    moves = rng.random(len(changed)) < 0.5
    region, industry = people.region[changed].copy(), people.industry[changed].copy()
    region[moves] = (region[moves] + rng.integers(1, len(REGIONS), moves.sum())) % len(REGIONS)
    industry[~moves] = (industry[~moves] + rng.integers(1, len(INDUSTRIES), (~moves).sum())) % len(INDUSTRIES)
    return changed, changed_at, region, industry


# --- orders, invoices, payments (one month at a time) --------------------------

def _plan_month(people: _Customers, cal: _Calendar, m: int, seed: int) -> np.ndarray:
    """Orders per customer in month m (drawn from its own stream, so it can be drawn again)."""
    rng = np.random.default_rng([seed, _PLAN, m])
    return rng.poisson(people.order_rate * cal.season[m] * _active(people, m))


@dataclass
class _Orders:
    """One month of distinct orders (regular and dirty), sorted by ordered_at."""
    customer: np.ndarray
    ordered_at: np.ndarray
    updated_at: np.ndarray
    status: np.ndarray
    currency: np.ndarray
    cents: np.ndarray
    cost_cents: np.ndarray           # -1 = no cost
    dirty: np.ndarray                # index into DIRTY_ORDER_KINDS, -1 = regular

    def take(self, idx: np.ndarray) -> _Orders:
        return _Orders(**{k: v[idx] for k, v in vars(self).items()})

    @staticmethod
    def concat(parts: list[_Orders]) -> _Orders:
        return _Orders(**{k: np.concatenate([vars(p)[k] for p in parts]) for k in vars(parts[0])})


def _write_activity(out_dir: Path, fmt: str, counts: dict[str, int], people: _Customers,
                    cal: _Calendar, widths: _IdWidths, seed: int) -> None:
    """Orders, invoices and payments, generated and written one month at a time."""
    pending = set(DIRTY_ORDER_KINDS) | {"order_duplicate", "payment_duplicate", "unknown_invoice",
                                        "positive_credit_note"}
    if people.count < DIRTY_MIN_CUSTOMERS:
        pending.clear()
    next_order = next_invoice = next_payment = next_credit_note = 1
    with _Writer(out_dir, "orders", fmt, counts) as orders_out, \
            _Writer(out_dir, "invoices", fmt, counts) as invoices_out, \
            _Writer(out_dir, "payments", fmt, counts) as payments_out:
        for m in range(cal.months):
            rng = np.random.default_rng([seed, _ORDERS, m])
            month = _month_orders(people, cal, m, _plan_month(people, cal, m, seed), rng)
            month = _add_dirty_orders(month, rng, pending)
            order_ids = np.arange(next_order, next_order + len(month.cents))
            table, corrected = _order_table(month, order_ids, cal, widths, rng, pending)
            orders_out.write(table)
            next_order += len(order_ids)
            credit_notes = _credit_note_table(month, order_ids, corrected, next_credit_note, cal, widths,
                                              np.random.default_rng([seed, _CREDIT_NOTES, m]), pending)
            orders_out.write(credit_notes)
            next_credit_note += credit_notes.num_rows

            invoiced = np.flatnonzero((month.dirty < 0) & (month.status == 0))
            invoice_ids = np.arange(next_invoice, next_invoice + len(invoiced))
            invoices_out.write(_invoice_table(month.take(invoiced), order_ids[invoiced], invoice_ids, widths))
            next_invoice += len(invoice_ids)

            pay_rng = np.random.default_rng([seed, _PAYMENTS, m])
            payments, paid = _payment_table(people, month.take(invoiced), invoice_ids, next_payment, cal, m,
                                            widths, pay_rng, pending)
            payments_out.write(payments)
            next_payment += paid


def _month_orders(people: _Customers, cal: _Calendar, m: int, plan: np.ndarray,
                  rng: np.random.Generator) -> _Orders:
    who = np.repeat(np.arange(people.count), plan)
    k = len(who)
    month_start, month_end = cal.starts[m], cal.starts[m + 1]
    lower = np.maximum(people.created_at[who] + 1, month_start)
    ordered_at = lower + (rng.random(k) * (month_end - lower)).astype(np.int64)
    currency = people.currency[who]
    value_eur = people.order_value_eur[who] * rng.lognormal(0.0, ORDER_VALUE_SIGMA, k)
    cents = np.maximum(100, np.rint(value_eur * 100 / cal.fx[currency, m])).astype(np.int64)
    has_cost = rng.random(k) < COST_SHARE
    cost = np.where(has_cost, np.rint(cents * rng.uniform(*COST_RATIO, k)), -1).astype(np.int64)
    orders = _Orders(
        customer=who,
        ordered_at=ordered_at,
        updated_at=_order_updated_at(ordered_at, cal, rng),
        status=rng.choice(len(STATUSES), k, p=STATUS_SHARES),
        currency=currency,
        cents=cents,
        cost_cents=cost,
        dirty=np.full(k, -1),
    )
    return orders.take(np.argsort(ordered_at, kind="stable"))


def _order_updated_at(ordered_at: np.ndarray, cal: _Calendar, rng: np.random.Generator) -> np.ndarray:
    """A few minutes to hours later (same day); ~2% arrive 1-2 months late."""
    k = len(ordered_at)
    end_of_day = (ordered_at // DAY + 1) * DAY - 1
    updated = np.minimum(ordered_at + rng.integers(60, 6 * HOUR, k), end_of_day)
    late = ordered_at + rng.integers(LATE_ORDER_DELAY_DAYS[0] * DAY, LATE_ORDER_DELAY_DAYS[1] * DAY, k)
    is_late = (rng.random(k) < LATE_ORDER_SHARE) & (late < cal.end)
    return np.where(is_late, late, updated)


def _dirty_count(rng: np.random.Generator, candidates: int, share: float, kind: str, pending: set[str]) -> int:
    """Binomial count of dirty rows; at least one while the kind is still pending."""
    if candidates == 0:
        return 0
    count = int(rng.binomial(candidates, share))
    if kind in pending:
        count = max(count, 1)
        pending.discard(kind)
    return min(count, candidates)


def _add_dirty_orders(month: _Orders, rng: np.random.Generator, pending: set[str]) -> _Orders:
    """Copies of random regular orders, each broken in one way (applied when formatting)."""
    k = len(month.cents)
    parts = [month]
    for kind_index, kind in enumerate(DIRTY_ORDER_KINDS):
        share = 0.0 if kind == "bad_updated_at" else DIRTY_ORDER_SHARE   # that one: exactly one row
        n = _dirty_count(rng, k, share, kind, pending)
        if n == 0:
            continue
        dirty = month.take(rng.choice(k, n, replace=False))
        end_of_day = (dirty.ordered_at // DAY + 1) * DAY - 1
        dirty.ordered_at = np.minimum(dirty.ordered_at + rng.integers(1, HOUR, n), end_of_day)
        dirty.updated_at = np.minimum(dirty.ordered_at + rng.integers(60, HOUR, n), end_of_day)
        factor = rng.uniform(0.5, 1.5, n)
        dirty.cents = np.maximum(100, np.rint(dirty.cents * factor)).astype(np.int64)
        dirty.cost_cents = np.where(dirty.cost_cents >= 0, np.rint(dirty.cost_cents * factor), -1).astype(np.int64)
        dirty.status = np.zeros(n, np.int64)
        dirty.dirty = np.full(n, kind_index)
        parts.append(dirty)
    merged = _Orders.concat(parts)
    return merged.take(np.argsort(merged.ordered_at, kind="stable"))


def _order_table(month: _Orders, order_ids: np.ndarray, cal: _Calendar, widths: _IdWidths,
                 rng: np.random.Generator, pending: set[str]) -> tuple[pa.Table, np.ndarray]:
    """Every version of the month's orders: originals, corrections and exact duplicates; and the
    positions (in `month`) of the orders that got a correction row."""
    k = len(order_ids)
    regular_completed = np.flatnonzero((month.dirty < 0) & (month.status == 0))
    fixed = regular_completed[rng.random(len(regular_completed)) < CORRECTION_SHARE]
    fixed_at = month.updated_at[fixed] + rng.integers(CORRECTION_DELAY_DAYS[0] * DAY,
                                                      CORRECTION_DELAY_DAYS[1] * DAY, len(fixed))
    keep = fixed_at < cal.end
    fixed, fixed_at = fixed[keep], fixed_at[keep]
    correction = month.take(fixed)
    correction.updated_at = fixed_at
    kind = rng.choice(len(CORRECTION_KINDS), len(fixed), p=CORRECTION_KIND_SHARES)
    correction.status = np.array([STATUSES.index(s) for s in CORRECTION_STATUS])[kind]
    partial = kind == CORRECTION_KINDS.index("partial")
    kept = np.where(partial, rng.uniform(*PARTIAL_RETURN_KEEP, len(fixed)), 1.0)
    correction.cents = np.maximum(1, np.rint(correction.cents * kept)).astype(np.int64)
    has_cost = correction.cost_cents >= 0
    correction.cost_cents = np.where(has_cost, np.rint(correction.cost_cents * kept), -1).astype(np.int64)

    regular = np.flatnonzero(month.dirty < 0)
    duplicated = rng.choice(regular, _dirty_count(rng, len(regular), DUPLICATE_SHARE, "order_duplicate", pending),
                            replace=False)
    versions = _Orders.concat([month, correction, month.take(duplicated)])
    ids = np.concatenate([order_ids, order_ids[fixed], order_ids[duplicated]])
    rank = np.concatenate([np.zeros(k), np.full(len(fixed), 2), np.ones(len(duplicated))])
    order = np.lexsort((rank, ids))
    return _format_orders(versions.take(order), ids[order], widths), fixed


def _credit_note_table(month: _Orders, order_ids: np.ndarray, corrected: np.ndarray, first_id: int,
                       cal: _Calendar, widths: _IdWidths, rng: np.random.Generator,
                       pending: set[str]) -> pa.Table:
    """Credit notes (returns booked as lines of their own) of some of the month's completed
    orders that got no correction row, in the order of their dates, numbered from `first_id`.
    While still pending, one of them gets a positive amount (a dirty row, quarantined)."""
    candidates = np.flatnonzero((month.dirty < 0) & (month.status == 0))
    candidates = candidates[~np.isin(candidates, corrected)]
    returned = candidates[rng.random(len(candidates)) < CREDIT_NOTE_SHARE]
    k = len(returned)
    credited_at = month.ordered_at[returned] + rng.integers(*CREDIT_NOTE_DELAY_S, k)
    full = rng.random(k) < CREDIT_NOTE_FULL_SHARE
    share = np.where(full, 1.0, rng.uniform(*CREDIT_NOTE_RETURNED, k))
    no_original = rng.random(k) < CREDIT_NOTE_NO_ORIGINAL_SHARE
    end_of_day = (credited_at // DAY + 1) * DAY - 1
    updated_at = np.minimum(credited_at + rng.integers(60, HOUR, k), end_of_day)
    written = np.flatnonzero(credited_at < cal.end)
    written = written[np.argsort(credited_at[written], kind="stable")]
    returned, credited_at, updated_at = returned[written], credited_at[written], updated_at[written]
    share, no_original = share[written], no_original[written]
    sale = month.take(returned)
    cents = -np.maximum(1, np.rint(sale.cents * share)).astype(np.int64)
    if len(cents) and "positive_credit_note" in pending:
        cents[0] = -cents[0]
        pending.discard("positive_credit_note")
    cost = np.where(sale.cost_cents >= 0, np.rint(sale.cost_cents * share), -1).astype(np.int64)
    return pa.table({
        "order_id": _ids("R", np.arange(first_id, first_id + len(cents)), widths.order),
        "customer_id": _ids("C", sale.customer + 1, widths.customer),
        "ordered_at": _timestamps(credited_at),
        "status": pa.array([CREDIT_NOTE_STATUS] * len(cents), pa.string()),
        "currency": _pick(CURRENCIES, sale.currency),
        "amount": _amounts(cents),
        "cost": _replace(_amounts(np.maximum(cost, 0)), cost < 0, ""),
        "updated_at": _timestamps(updated_at),
        "original_order_id": _replace(_ids("O", order_ids[returned], widths.order), no_original, ""),
    })


def _format_orders(o: _Orders, order_ids: np.ndarray, widths: _IdWidths) -> pa.Table:
    def broken(kind: str) -> np.ndarray:
        return o.dirty == DIRTY_ORDER_KINDS.index(kind)

    amount = _amounts(np.where(broken("negative_amount"), -o.cents, o.cents))
    return pa.table({
        "order_id": _ids("O", order_ids, widths.order),
        "customer_id": _replace(_ids("C", o.customer + 1, widths.customer), broken("unknown_customer"),
                                UNKNOWN_CUSTOMER_ID),
        "ordered_at": _replace(_timestamps(o.ordered_at), broken("bad_ordered_at"), _unparseable_date),
        "status": _pick(STATUSES, o.status),
        "currency": _replace(_pick(CURRENCIES, o.currency), broken("unknown_currency"), UNKNOWN_CURRENCY),
        "amount": _replace(amount, broken("empty_amount"), ""),
        "cost": _replace(_amounts(np.maximum(o.cost_cents, 0)), o.cost_cents < 0, ""),
        "updated_at": _replace(_timestamps(o.updated_at), broken("bad_updated_at"), _day_32),
        "original_order_id": pa.array([""] * len(order_ids), pa.string()),
    })


def _replace(values: pa.Array, mask: np.ndarray, replacement: str | Callable[[pa.Array], pa.Array]) -> pa.Array:
    """values with the masked entries replaced by a constant or by a function of those entries."""
    if not mask.any():
        return values
    selected = values.filter(pa.array(mask))
    if isinstance(replacement, str):
        new_values = pa.array([replacement] * len(selected), pa.string())
    else:
        new_values = replacement(selected)
    return pc.replace_with_mask(values, pa.array(mask), new_values)


def _unparseable_date(timestamps: pa.Array) -> pa.Array:
    """Alternately month 13 ('2024-13-15T10:22:01') and day-first with slashes ('15/03/2024')."""
    def part(start: int, stop: int) -> pa.Array:
        return pc.utf8_slice_codeunits(timestamps, start, stop)
    month_13 = _join(part(0, 5), "13", part(7, 19))
    day_first = _join(part(8, 10), "/", part(5, 7), "/", part(0, 4))
    return pc.if_else(pa.array(np.arange(len(timestamps)) % 2 == 0), month_13, day_first)


def _day_32(timestamps: pa.Array) -> pa.Array:
    return _join(pc.utf8_slice_codeunits(timestamps, 0, 8), "32", pc.utf8_slice_codeunits(timestamps, 10, 19))


def _invoice_table(o: _Orders, order_ids: np.ndarray, invoice_ids: np.ndarray, widths: _IdWidths) -> pa.Table:
    issued_day = o.ordered_at // DAY
    return pa.table({
        "invoice_id": _ids("I", invoice_ids, widths.order),
        "order_id": _ids("O", order_ids, widths.order),
        "customer_id": _ids("C", o.customer + 1, widths.customer),
        "issued_on": _dates(issued_day),
        "due_on": _dates(issued_day + PAYMENT_TERMS_DAYS),
        "amount_due": _amounts(o.cents),
        "currency": _pick(CURRENCIES, o.currency),
        "updated_at": _timestamps(issued_day * DAY + DAY - 1),   # the end-of-day invoicing run
    })


def _payment_table(people: _Customers, invoiced: _Orders, invoice_ids: np.ndarray, first_payment_id: int,
                   cal: _Calendar, m: int, widths: _IdWidths, rng: np.random.Generator,
                   pending: set[str]) -> tuple[pa.Table, int]:
    """Payments of the month's invoices (by invoice, then paid_at), then payments of an unknown
    invoice, with a few exact duplicate lines; returns (rows, number of payment ids used)."""
    invoice, paid_at, cents = _scheduled_payments(people, invoiced, invoice_ids, cal, rng)
    stray = _dirty_count(rng, len(invoice_ids), DIRTY_ORDER_SHARE, "unknown_invoice", pending)
    month_start, month_end = cal.starts[m], cal.starts[m + 1]
    stray_at = np.sort(month_start + (rng.random(stray) * (month_end - month_start)).astype(np.int64))
    stray_cents = invoiced.cents[rng.integers(0, max(len(invoice_ids), 1), stray)]

    invoice_text = pa.concat_arrays([_ids("I", invoice, widths.order),
                                     pa.array([UNKNOWN_INVOICE_ID] * stray, pa.string())])
    paid_at = np.concatenate([paid_at, stray_at])
    total = len(paid_at)
    table = pa.table({
        "payment_id": _ids("P", np.arange(first_payment_id, first_payment_id + total), widths.payment),
        "invoice_id": invoice_text,
        "paid_at": _timestamps(paid_at),
        "amount": _amounts(np.concatenate([cents, stray_cents])),
        "updated_at": _timestamps(paid_at),
    })
    duplicates = rng.choice(total, _dirty_count(rng, total, DUPLICATE_SHARE, "payment_duplicate", pending),
                            replace=False)
    rows = np.sort(np.concatenate([np.arange(total), duplicates]))
    return table.take(pa.array(rows, pa.int64())), total


def _scheduled_payments(people: _Customers, invoiced: _Orders, invoice_ids: np.ndarray, cal: _Calendar,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(invoice id, paid_at, cents) of the payments made before the end of the range."""
    n = len(invoice_ids)
    behaviour = _invoice_behaviour(people.behaviour[invoiced.customer], rng)
    days = np.zeros(n, np.int64)
    split = np.zeros(n, bool)
    for b, name in enumerate(BEHAVIOURS[:3]):
        mask = behaviour == b
        low, high = PAY_DAYS_AFTER_ISSUE[name]
        days[mask] = rng.integers(low, high + 1, mask.sum())
        split[mask] = rng.random(mask.sum()) < SPLIT_SHARE[name]
    paying = behaviour < BEHAVIOURS.index("never")
    issued_at = invoiced.ordered_at // DAY * DAY
    first_at = issued_at + days * DAY + rng.integers(8 * HOUR, 20 * HOUR, n)
    first_cents = np.where(split, np.rint(invoiced.cents * rng.uniform(*SPLIT_FIRST_PART, n)),
                           invoiced.cents).astype(np.int64)
    second_at = first_at + rng.integers(SPLIT_GAP_DAYS[0], SPLIT_GAP_DAYS[1] + 1, n) * DAY

    first = np.flatnonzero(paying & (first_at < cal.end))
    second = np.flatnonzero(paying & split & (second_at < cal.end))
    invoice = np.concatenate([invoice_ids[first], invoice_ids[second]])
    paid_at = np.concatenate([first_at[first], second_at[second]])
    cents = np.concatenate([first_cents[first], invoiced.cents[second] - first_cents[second]])
    order = np.lexsort((paid_at, invoice))
    return invoice[order], paid_at[order], cents[order]


def _invoice_behaviour(customer_behaviour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mixed payer's invoices each take one of the other behaviours."""
    mixed = customer_behaviour == BEHAVIOURS.index("mixed")
    drawn = rng.choice(4, len(customer_behaviour), p=MIXED_SHARES)
    return np.where(mixed, drawn, customer_behaviour)


# --- text formatting (vectorised, exact) ------------------------------------------

def _text(values: np.ndarray, width: int = 0) -> pa.Array:
    text = pc.cast(pa.array(np.asarray(values, np.int64)), pa.string())
    return pc.utf8_lpad(text, width=width, padding="0") if width else text


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    return _join(prefix, _text(numbers, width))


def _amounts(cents: np.ndarray) -> pa.Array:
    """Integer cents -> '1234.50' (exactly two decimals, '-' for negatives)."""
    cents = np.asarray(cents, np.int64)
    magnitude = np.abs(cents)
    text = _join(_text(magnitude // 100), ".", _text(magnitude % 100, 2))
    return pc.if_else(pa.array(cents < 0), _join("-", text), text)


def _timestamps(seconds: np.ndarray) -> pa.Array:
    """Epoch seconds -> 'YYYY-MM-DDTHH:MM:SS'."""
    text = pc.cast(pa.array(np.asarray(seconds, np.int64), pa.timestamp("s")), pa.string())
    return pc.replace_substring(text, " ", "T")


def _dates(days: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(days, np.int32), pa.date32()), pa.string())


def _pick(choices, index: np.ndarray) -> pa.Array:
    return pa.array(list(choices), pa.string()).take(pa.array(np.asarray(index, np.int64)))


def _join(*parts) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars."""
    return pc.binary_join_element_wise(*parts, "")


def _slug(text: str) -> str:
    return text.lower().replace(" ", "")


# --- writing --------------------------------------------------------------------------

class _Writer:
    """Streams tables of string columns to <name>.csv or <name>.parquet; counts the rows."""

    def __init__(self, out_dir: Path, name: str, fmt: str, counts: dict[str, int]):
        self.name, self.fmt, self.counts = name, fmt, counts
        self.file_name = f"{name}.{fmt}"
        self.path = out_dir / self.file_name
        self.columns = COLUMNS[name]
        self.schema = pa.schema([(c, pa.string()) for c in self.columns])
        self.rows = 0

    def __enter__(self) -> _Writer:
        if self.fmt == "csv":
            self._fh = open(self.path, "wb")
            self._fh.write((",".join(self.columns) + "\n").encode("utf-8"))
        else:
            self._fh = pq.ParquetWriter(self.path, self.schema)
        return self

    def write(self, table: pa.Table) -> None:
        table = table.select(list(self.columns)).cast(self.schema)
        if table.num_rows == 0:
            return
        if self.fmt == "csv":
            pacsv.write_csv(table, self._fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        else:
            self._fh.write_table(table)
        self.rows += table.num_rows

    def __exit__(self, *exc) -> None:
        self._fh.close()
        self.counts[self.file_name] = self.rows
