-- Every landed payment version the month computed reads, with the rule it breaks as of that month:
-- its own row rule (stg_landing__payments), else paid after the month's end or for an invoice
-- unknown at the month's end. Valid rows: rejection_rule null.
{{ config(materialized='view') }}

-- (the rows rejected by their own row rule and the valid ones: two CTEs each read once, not one
-- read twice, which DuckDB would first write out whole, every column of every version)
with row_rejected as (
    select * from {{ ref('stg_landing__payments') }}
    where {{ in_month_reach() }} and rejection_rule is not null
),

payments as (
    select * from {{ ref('stg_landing__payments') }}
    where {{ in_month_reach() }} and rejection_rule is null
),

invoices as (
    select invoice_id from {{ ref('int_invoices__as_of') }}
),

{%- set checks = [
    ('after_month_end', 'payments.paid_at >= ' ~ next_month_start(),
     "'paid_at ' || cast(payments.paid_at as " ~ text_type() ~ ") || ' is after the end of the month computed (valid from the month it falls in)'"),
    ('unknown_invoice', 'invoices.invoice_id is null',
     "'unknown invoice ''' || payments.invoice_id || ''' as of the end of the month computed'"),
] %}

month_checked as (
    select
        payments.*,
        {{ first_broken_rule(checks, 'month') }}
    from payments
    left join invoices on payments.invoice_id = invoices.invoice_id
)

select
    payment_id,
    invoice_id,
    paid_at,
    amount,
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
    payment_id,
    invoice_id,
    paid_at,
    amount,
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
