-- Every landed invoice version the month computed reads, with the rule it breaks as of that month:
-- its own row rule (stg_landing__invoices), else issued after the month's end, a currency without
-- a rate that month, or a customer unknown at the month's end. Valid rows: rejection_rule null.
{{ config(materialized='view') }}

{%- set reporting = rule('reporting_currency') %}

-- (the rows rejected by their own row rule and the valid ones: two CTEs each read once, not one
-- read twice, which DuckDB would first write out whole, every column of every version)
with row_rejected as (
    select * from {{ ref('stg_landing__invoices') }}
    where {{ in_month_reach() }} and rejection_rule is not null
),

invoices as (
    select * from {{ ref('stg_landing__invoices') }}
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
    ('after_month_end', 'invoices.issued_on >= ' ~ next_month_start(),
     "'issued_on ' || cast(invoices.issued_on as " ~ text_type() ~ ") || ' is after the end of the month computed (valid from the month it falls in)'"),
    ('unknown_currency', "invoices.currency <> '" ~ reporting ~ "' and known_currencies.currency is null",
     "'unknown currency ''' || invoices.currency || ''' (not " ~ reporting ~ " and not in fx_rates)'"),
    ('missing_fx_rate', "invoices.currency <> '" ~ reporting ~ "' and rates.currency is null",
     "'no fx rate for ' || invoices.currency || ' in ' || substr(cast(invoices.issued_on as " ~ text_type() ~ "), 1, 7)"),
    ('unknown_customer', 'customers.customer_id is null',
     "'unknown customer ''' || invoices.customer_id || ''' as of the end of the month computed'"),
] %}

month_checked as (
    select
        invoices.*,
        {{ first_broken_rule(checks, 'month') }}
    from invoices
    left join known_currencies on invoices.currency = known_currencies.currency
    left join rates
        on
            invoices.currency = rates.currency
            and {{ dbt.date_trunc('month', 'invoices.issued_on') }} = rates.rate_month
    left join customers on invoices.customer_id = customers.customer_id
)

select
    invoice_id,
    order_id,
    customer_id,
    issued_on,
    due_on,
    amount_due,
    currency,
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
    invoice_id,
    order_id,
    customer_id,
    issued_on,
    due_on,
    amount_due,
    currency,
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
