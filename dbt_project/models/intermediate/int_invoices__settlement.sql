-- One row per invoice that credit grading reads (int_invoice_ledger), as of the month end: issued
-- in the credit window, or issued earlier and still open at the month end; with what was paid by
-- the month end (payments paid before the next month starts) and the day it was settled
-- (cumulative payments first reached the amount due). Invoices settled before the window are left
-- out: they would only grow with the history (docs/rules.md, "Credit": the credit population).
with invoices as (
    select *
    from {{ ref('int_invoices__as_of') }}
),

-- (read twice, by the totals and the instalments: a scan of the table each time costs less than
-- writing these rows out first)
payments as {{ not_materialized() }} (
    select *
    from {{ ref('int_payments__as_of') }}
    where paid_at < {{ next_month_start() }}
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
    where
        invoices.issued_on <= {{ month_last_day() }}
        and (
            invoices.issued_on >= date '{{ var("credit_window_start") }}'
            or coalesce(payment_totals.paid_to_date, 0) < invoices.amount_due
        )
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
    where
        invoice_totals.payment_count > 1
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
)

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
    end as settled_on
from invoice_totals
left join instalment_settlement on instalment_settlement.invoice_id = invoice_totals.invoice_id
