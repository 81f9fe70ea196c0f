-- Every landed order version the month computed reads, with the rule it breaks as of that month:
-- its own row rule (stg_landing__orders), else ordered after the month's end, a currency without
-- a rate that month, or a customer unknown at the month's end. Valid rows: rejection_rule null.
{{ config(materialized='view') }}

{%- set reporting = rule('reporting_currency') %}

-- (the rows rejected by their own row rule and the valid ones: two CTEs each read once, not one
-- read twice, which DuckDB would first write out whole, every column of every version)
with row_rejected as (
    select * from {{ ref('stg_landing__orders') }}
    where {{ in_month_reach() }} and rejection_rule is not null
),

orders as (
    select * from {{ ref('stg_landing__orders') }}
    where {{ in_month_reach() }} and rejection_rule is null
),

rates as (
    select * from {{ ref('int_fx_rates__as_of') }}
),

known_currencies as (
    select distinct currency from rates
),

customers as (
    select customer_id from {{ ref('int_customers__as_of') }}
),

{%- set checks = [
    ('after_month_end', 'orders.ordered_at >= ' ~ next_month_start(),
     "'ordered_at ' || cast(orders.ordered_at as " ~ text_type() ~ ") || ' is after the end of the month computed (valid from the month it falls in)'"),
    ('unknown_currency', "orders.currency <> '" ~ reporting ~ "' and known_currencies.currency is null",
     "'unknown currency ''' || orders.currency || ''' (not " ~ reporting ~ " and not in fx_rates)'"),
    ('missing_fx_rate', "orders.currency <> '" ~ reporting ~ "' and rates.currency is null",
     "'no fx rate for ' || orders.currency || ' in ' || substr(cast(orders.ordered_at as " ~ text_type() ~ "), 1, 7)"),
    ('unknown_customer', 'customers.customer_id is null',
     "'unknown customer ''' || orders.customer_id || ''' as of the end of the month computed'"),
] %}

month_checked as (
    select
        orders.*,
        {{ first_broken_rule(checks, 'month') }}
    from orders
    left join known_currencies on orders.currency = known_currencies.currency
    left join rates
        on
            orders.currency = rates.currency
            and {{ dbt.date_trunc('month', 'orders.ordered_at') }} = rates.rate_month
    left join customers on orders.customer_id = customers.customer_id
)

select
    order_id,
    customer_id,
    ordered_at,
    order_status,
    currency,
    amount,
    cost,
    original_order_id,
    updated_at,
    rejection_rule,
    rejection_reason,
    rejected_record,
    source_file,
    source_line,
    landing_partition,
    landing_file,
    is_version,
    previous_updated_at
from row_rejected

union all

select
    order_id,
    customer_id,
    ordered_at,
    order_status,
    currency,
    amount,
    cost,
    original_order_id,
    updated_at,
    month_rule,
    month_reason,
    -- (no record: staging keeps the landed values of its own rejections only, for every month;
    -- quarantine.rejected_rows reads the month's few from the change log, int_month_rejections)
    cast(null as {{ text_type() }}),
    source_file,
    source_line,
    landing_partition,
    landing_file,
    is_version,
    previous_updated_at
from month_checked
