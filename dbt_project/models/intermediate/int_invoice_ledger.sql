-- One row per invoice that credit grading reads (int_customer_credit_measures): issued in the
-- credit window, or issued earlier and still open at the month end. What was paid by the month
-- end, when it was settled (the day cumulative payments first reached the amount due), days past
-- due (settled late: settled - due; still open: month end - due; never negative), open balance.
-- (Invoices settled before the window are left out: they would only grow with the history.)
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

-- what was paid per invoice by the month end: one group-by, which spills to disk under a memory limit
payment_totals as (
    select
        invoice_id,
        sum(amount) as paid_to_date,
        count(*) as payment_count,
        max(paid_at) as last_paid_at
    from payments
    group by invoice_id
),

invoice_totals as (
    select
        invoices.*,
        coalesce(payment_totals.paid_to_date, 0) as paid_to_date,
        coalesce(payment_totals.payment_count, 0) as payment_count,
        payment_totals.last_paid_at
    from invoices
    left join payment_totals on payment_totals.invoice_id = invoices.invoice_id
),

-- an invoice paid in full by one payment settled on that payment's day; only the invoices paid
-- in full by several payments need the running sum (a few percent of the payments)
instalments as (
    select
        payments.invoice_id,
        payments.payment_id,
        payments.paid_at,
        payments.amount,
        invoice_totals.amount_due
    from payments
    inner join invoice_totals on invoice_totals.invoice_id = payments.invoice_id
    where invoice_totals.payment_count > 1
        and invoice_totals.paid_to_date >= invoice_totals.amount_due
),

instalments_running as (
    select
        invoice_id,
        paid_at,
        amount_due,
        sum(amount) over (
            partition by invoice_id order by paid_at, payment_id
            rows between unbounded preceding and current row
        ) as paid_running
    from instalments
),

instalment_settlement as (
    select
        invoice_id,
        min(cast(paid_at as date)) as settled_on
    from instalments_running
    where paid_running >= amount_due
    group by invoice_id
),

ledger as (
    select
        invoice_totals.invoice_id,
        invoice_totals.customer_id,
        invoice_totals.order_id,
        invoice_totals.issued_on,
        invoice_totals.due_on,
        invoice_totals.currency,
        invoice_totals.amount_due,
        invoice_totals.paid_to_date,
        case
            when invoice_totals.amount_due <= 0 then invoice_totals.issued_on
            when invoice_totals.paid_to_date < invoice_totals.amount_due then null
            when invoice_totals.payment_count = 1 then cast(invoice_totals.last_paid_at as date)
            else instalment_settlement.settled_on
        end as settled_on,
        case
            when invoice_totals.currency = {{ lit(rule('reporting_currency')) }} then cast(1 as decimal(18, 8))
            else fx_rates.rate_to_reporting
        end as fx_rate
    from invoice_totals
    left join instalment_settlement on instalment_settlement.invoice_id = invoice_totals.invoice_id
    left join fx_rates
        on fx_rates.currency = invoice_totals.currency
        and fx_rates.rate_month = cast({{ dbt.date_trunc('month', 'invoice_totals.issued_on') }} as date)
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
where issued_on >= date '{{ var("credit_window_start") }}' or paid_to_date < amount_due
