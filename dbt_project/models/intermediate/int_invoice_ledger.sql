-- One row per invoice that credit grading reads (int_customer_credit_measures), as
-- int_invoices__settlement chose them (issued in the credit window, or earlier and still open at
-- the month end), with days past due (settled late: settled - due; still open: month end - due;
-- never negative) and the open balance.
-- A view: credit grading reads it once, and writing its rows (half of all invoices) cost more
-- than computing them again for its tests.
{{ config(materialized='view') }}
with invoices as (
    select * from {{ ref('int_invoices__settlement') }}
),

fx_rates as (
    select * from {{ ref('int_fx_rates__as_of') }}
),

ledger as (
    select
        invoices.*,
        case
            when invoices.currency = {{ lit(rule('reporting_currency')) }} then cast(1 as decimal(18, 8))
            else fx_rates.rate_to_reporting
        end as fx_rate
    from invoices
    left join fx_rates
        on
            fx_rates.currency = invoices.currency
            and fx_rates.rate_month = cast({{ dbt.date_trunc('month', 'invoices.issued_on') }} as date)
)

select
    invoice_id,
    customer_id,
    order_id,
    issued_on,
    due_on,
    currency,
    amount_due,
    paid_to_date,
    settled_on,
    settled_on is not null as is_settled,
    paid_to_date > amount_due as is_overpaid,
    due_on <= {{ month_last_day() }} as is_due,
    coalesce(settled_on <= due_on, false) as is_paid_on_time,
    greatest(
        case
            when settled_on is not null then {{ dbt.datediff('due_on', 'settled_on', 'day') }}
            else {{ dbt.datediff('due_on', month_last_day(), 'day') }}
        end, 0
    ) as days_past_due,
    greatest(amount_due - paid_to_date, 0) as open_balance,
    cast(amount_due * fx_rate as decimal(18, 4)) as amount_due_reporting,
    cast(greatest(amount_due - paid_to_date, 0) * fx_rate as decimal(18, 4)) as open_balance_reporting
from ledger
