"""Gate (c) "marts": after the dbt marts, before publish (for the run's month).

Datasets: the month's rows of customer_tier_monthly and tier_summary_monthly; the previous
computed month's customers; tier_policy; the column names of every marts table; e-mail-like
values in the marts' text columns.

Checks (severity error unless gates.yml says otherwise):
  customer_tier_monthly.not_empty
  customer_tier_monthly.one_row_per_customer_month
  customer_tier_monthly.every_known_customer        one row per customer of staging customers
  customer_tier_monthly.value_tier_in_set / final_tier_in_set / credit_grade_in_set / movement_in_set
                                                    (not null and other marts' values: dbt schema tests)
  customer_tier_monthly.a_customers_value_share     pareto rules: A customers (by value_tier) hold at
                                                    least a_share of the value (when there is revenue)
  previous_month_customers.still_present            every customer of the previous computed month
  tier_summary_monthly.revenue_share_sums_to_one    (when the month has revenue; else sums to 0)
  tier_summary_monthly.customer_count_matches       the tiers' customer counts add up to the customers
  tier_policy.tiers
  marts_columns.no_pii_columns                      no column named like personal data (name, email,
                                                    phone, ... see pii_column_tokens in gates.yml)
  marts_text_values.email_like_values (warn)        no text value that looks like an e-mail address
"""
from __future__ import annotations

import re

import great_expectations as gx
from great_expectations.expectations.row_conditions import Column

from tiering.pii import EMAIL_PATTERN
from tiering.rules import GRADES, TIERS

E = gx.expectations

MOVEMENTS = ("new", "upgraded", "downgraded", "unchanged", "lapsed")
EMAIL_VALUE = EMAIL_PATTERN   # tiering.pii: the one definition of an e-mail address
SHORT_TOKEN = 4   # tokens shorter than this match only as a whole word (tel, fax, zip, dob, ssn)


def pii_regex(tokens) -> str:
    """Regex on 'table.column' matching a column whose name is personal data.

    The column name is split on '_'; a word matches when it equals a token, or, for tokens of
    4+ letters, contains it ('firstname', 'emailaddress', 'customer_name', 'phone_number').
    """
    long = sorted({re.escape(t.lower()) for t in tokens if len(t) >= SHORT_TOKEN}, key=len, reverse=True)
    short = sorted({re.escape(t.lower()) for t in tokens if len(t) < SHORT_TOKEN}, key=len, reverse=True)
    words = []
    if long:
        words.append(f"[^_.]*(?:{'|'.join(long)})[^_.]*")
    if short:
        words.append("|".join(short))
    return rf"(?i)\.(?:[^_.]*_)*(?:{'|'.join(words)})(?:_[^_.]*)*$"


def pii_columns(column_refs, tokens) -> list[str]:
    """The 'table.column' names that look like personal data (what the no_pii_columns check flags)."""
    pattern = re.compile(pii_regex(tokens))
    return [ref for ref in column_refs if pattern.search(ref)]


def build(b) -> None:
    month = b.spec.month
    m = b.marts   # marts_pending: the rows the run built, before they are swapped into marts
    tier_monthly = b.dataset("customer_tier_monthly", f"""
        select customer_id, month, net_revenue::double as net_revenue, value_share, value_tier, final_tier,
               credit_grade, movement
        from {m}.customer_tier_monthly where month = ?""", [month])
    b.expect("customer_tier_monthly", "not_empty", E.ExpectTableRowCountToBeBetween(min_value=1),
             "the month has rows")
    b.expect("customer_tier_monthly", "one_row_per_customer_month",
             E.ExpectCompoundColumnsToBeUnique(column_list=["customer_id", "month"]),
             "one row per (customer_id, month)")
    if b.table_exists("intermediate", "int_customers__as_of"):
        known = b.scalar("select count(*) from intermediate.int_customers__as_of")
        b.expect("customer_tier_monthly", "every_known_customer", E.ExpectTableRowCountToEqual(value=known),
                 f"one row for each of the {known} customers known at the month end (staging)")
    for col, allowed in (("value_tier", TIERS), ("final_tier", TIERS), ("credit_grade", GRADES),
                         ("movement", MOVEMENTS)):
        # (not null is dbt's schema test of the column: docs/quality.md says who owns which check)
        b.expect("customer_tier_monthly", f"{col}_in_set",
                 E.ExpectColumnValuesToBeInSet(column=col, value_set=list(allowed)),
                 f"{col} is one of {' | '.join(allowed)}")

    has_revenue = bool((tier_monthly["net_revenue"] > 0).any())
    value = b.rules.data["value"]
    if value["rule_set"] == "pareto" and has_revenue:
        a_share = value["pareto"]["a_share"]
        tolerance = b.threshold("revenue_share_tolerance")
        b.expect("customer_tier_monthly", "a_customers_value_share",
                 E.ExpectColumnSumToBeBetween(column="value_share", min_value=a_share - tolerance,
                                              row_condition=Column("value_tier") == "A"),
                 f"pareto rules: the A customers (value_tier) hold at least a_share = {a_share} of the value")
    else:
        b.note("a_customers_value_share not evaluated: " +
               ("no revenue this month" if not has_revenue else f"rule set is {value['rule_set']}"))

    previous = b.scalar(f"select max(month) from {m}.customer_tier_monthly where month < ?", [month])
    if previous is not None:
        b.dataset("previous_month_customers", f"""
            select p.customer_id, p.month,
                   case when c.customer_id is null then p.customer_id end as missing_customer_id
            from {m}.customer_tier_monthly p
            left join (select customer_id from {m}.customer_tier_monthly where month = ?) c
                   on c.customer_id = p.customer_id
            where p.month = ?""", [month, previous])
        b.expect("previous_month_customers", "still_present",
                 E.ExpectColumnValuesToBeNull(column="missing_customer_id"),
                 f"every customer of the previous computed month {previous:%Y-%m} is present in {month:%Y-%m} "
                 f"(the unexpected values are the missing customers)")
    else:
        b.note("still_present not evaluated: no earlier month computed")

    summary = b.dataset("tier_summary_monthly", f"""
        select month, final_tier, customer_count, net_revenue::double as net_revenue, revenue_share
        from {m}.tier_summary_monthly where month = ?""", [month])
    tolerance = b.threshold("revenue_share_tolerance")
    target = 1.0 if bool((summary["net_revenue"] > 0).any()) else 0.0
    b.expect("tier_summary_monthly", "revenue_share_sums_to_one",
             E.ExpectColumnSumToBeBetween(column="revenue_share", min_value=target - tolerance,
                                          max_value=target + tolerance),
             f"revenue_share sums to {target:g} within {tolerance:g}"
             + ("" if target else " (the month has no revenue)"))
    b.expect("tier_summary_monthly", "customer_count_matches",
             E.ExpectColumnSumToBeBetween(column="customer_count", min_value=len(tier_monthly),
                                          max_value=len(tier_monthly)),
             f"the tiers' customer counts add up to the {len(tier_monthly)} rows of customer_tier_monthly")

    # customer_credit_monthly's grades and the history's single current interval are dbt's tests
    # (accepted_values; assert_customer_tier_history_one_current_row_per_customer): docs/quality.md
    if b.table_exists(m, "tier_policy"):
        b.dataset("tier_policy", f"select tier from {m}.tier_policy")
        b.expect("tier_policy", "tiers", E.ExpectColumnDistinctValuesToEqualSet(column="tier", value_set=list(TIERS)),
                 "a service policy for every tier")

    # --- no personal data in marts ---
    columns = b.dataset("marts_columns", f"""
        select table_name, column_name, data_type, table_name || '.' || column_name as column_ref
        from information_schema.columns
        where table_schema = '{m}' and table_catalog = current_database()
        order by table_name, ordinal_position""")
    b.expect("marts_columns", "no_pii_columns",
             E.ExpectColumnValuesToNotMatchRegex(column="column_ref", regex=pii_regex(b.config.pii_column_tokens)),
             "no marts table has a column named like personal data (" + ", ".join(b.config.pii_column_tokens) + ")")
    text_columns = columns[columns["data_type"].astype(str).str.upper().str.startswith("VARCHAR")]
    month_tables = set(columns.loc[columns["column_name"] == "month", "table_name"])
    scans = []
    for table, column in zip(text_columns["table_name"], text_columns["column_name"], strict=True):
        where = " where month = $month" if table in month_tables else ""
        scans.append(f"select '{table}.{column}' as column_ref, count(*) filter "
                     f"(where regexp_matches(\"{column}\", $email)) as email_like_values from {m}.\"{table}\"{where}")
    if scans:
        b.dataset("marts_text_values", " union all ".join(scans), {"month": month, "email": EMAIL_VALUE})
        b.expect("marts_text_values", "email_like_values",
                 E.ExpectColumnSumToBeBetween(column="email_like_values", min_value=0, max_value=0),
                 "no text value in marts looks like an e-mail address (this month's rows)")
