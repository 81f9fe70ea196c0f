-- Payment behaviour per customer: invoices issued in the credit window, plus every invoice
-- still open at the month end whatever its age (old arrears must not fall out of view).
with ledger as (
    select * from {{ ref('int_invoice_ledger') }}
),

credit_invoices as (
    select
        *,
        issued_on >= date '{{ var("credit_window_start") }}' as is_in_window
    from ledger
    where issued_on >= date '{{ var("credit_window_start") }}' or open_balance > 0
)

select
    customer_id,
    count(*) as invoice_count,
    count(case when is_due then 1 end) as due_invoice_count,
    cast(count(case when is_due and is_paid_on_time then 1 end) as {{ double_type() }})
    / nullif(count(case when is_due then 1 end), 0) as on_time_rate,
    avg(case when is_due then cast(days_past_due as {{ double_type() }}) end) as avg_days_late,
    max(case when is_due then days_past_due end) as max_days_late,
    coalesce(sum(case when not is_settled and days_past_due > 0 then open_balance_reporting end), 0) as overdue_balance,
    max(case when not is_settled and days_past_due > 0 then days_past_due end) as oldest_overdue_days,
    coalesce(sum(case when is_in_window then amount_due_reporting end), 0) as invoiced_in_window,
    count(case when is_overpaid then 1 end) as overpaid_invoice_count
from credit_invoices
group by customer_id
