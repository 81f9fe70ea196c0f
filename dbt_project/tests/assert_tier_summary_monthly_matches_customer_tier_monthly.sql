-- tier_summary_monthly has one row per (month, final_tier) present in customer_tier_monthly, and
-- its customer counts, active and key-account counts and revenue equal the customer rows', in
-- the months the run rebuilt (macros/months.sql). Returns the offending (month, tier) pairs.
with summary as (
    select
        *,
        count(*) over (partition by month, final_tier) as rows_for_month_tier
    from {{ ref('tier_summary_monthly') }}
    where month in ({{ months_rebuilt() }})
),

customers as (
    select
        month,
        final_tier,
        count(*) as customer_count,
        count(case when is_active then 1 end) as active_customer_count,
        count(case when is_key_account then 1 end) as key_account_count,
        sum(net_revenue) as net_revenue
    from {{ ref('customer_tier_monthly') }}
    where month in ({{ months_rebuilt() }})
    group by month, final_tier
)

select
    coalesce(summary.month, customers.month) as month,
    coalesce(summary.final_tier, customers.final_tier) as final_tier,
    summary.customer_count,
    customers.customer_count as customer_rows,
    summary.net_revenue,
    customers.net_revenue as customer_net_revenue,
    summary.rows_for_month_tier
from summary
full outer join customers on customers.month = summary.month and customers.final_tier = summary.final_tier
where
    summary.month is null
    or customers.month is null
    or summary.rows_for_month_tier > 1
    or summary.customer_count <> customers.customer_count
    or summary.active_customer_count <> customers.active_customer_count
    or summary.key_account_count <> customers.key_account_count
    or summary.net_revenue <> customers.net_revenue
