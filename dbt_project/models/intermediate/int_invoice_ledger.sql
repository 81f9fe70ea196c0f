-- One row per invoice issued by the month end: what was paid by the month end, when it was
-- settled (the day cumulative payments first reached the amount due), days past due
-- (settled late: settled - due; still open: month end - due; never negative), open balance.
with invoices as (
    select *
    from {{ ref('stg_raw__invoices') }}
    where issued_on <= {{ month_last_day() }}
),

payments as (
    select *
    from {{ ref('stg_raw__payments') }}
    where paid_at < {{ next_month_start() }}
),

fx_rates as (
    select * from {{ ref('stg_raw__fx_rates') }}
),

payments_running as (
    select
        payments.invoice_id,
        payments.paid_at,
        payments.amount,
        sum(payments.amount) over (
            partition by payments.invoice_id order by payments.paid_at, payments.payment_id
            rows between unbounded preceding and current row
        ) as paid_running
    from payments
),

settlement as (
    select
        payments_running.invoice_id,
        sum(payments_running.amount) as paid_to_date,
        min(case when payments_running.paid_running >= invoices.amount_due
            then cast(payments_running.paid_at as date) end) as settled_on
    from payments_running
    inner join invoices on invoices.invoice_id = payments_running.invoice_id
    group by payments_running.invoice_id
),

ledger as (
    select
        invoices.invoice_id,
        invoices.customer_id,
        invoices.order_id,
        invoices.issued_on,
        invoices.due_on,
        invoices.currency,
        invoices.amount_due,
        coalesce(settlement.paid_to_date, 0) as paid_to_date,
        case when invoices.amount_due <= 0 then invoices.issued_on else settlement.settled_on end as settled_on,
        case
            when invoices.currency = {{ lit(rule('reporting_currency')) }} then cast(1 as decimal(18, 8))
            else fx_rates.rate_to_reporting
        end as fx_rate
    from invoices
    left join settlement on settlement.invoice_id = invoices.invoice_id
    left join fx_rates
        on fx_rates.currency = invoices.currency
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
        end, 0) as days_past_due,
    greatest(amount_due - paid_to_date, 0) as open_balance,
    cast(amount_due * fx_rate as decimal(18, 4)) as amount_due_reporting,
    cast(greatest(amount_due - paid_to_date, 0) * fx_rate as decimal(18, 4)) as open_balance_reporting
from ledger
