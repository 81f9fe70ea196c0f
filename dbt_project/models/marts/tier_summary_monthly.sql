{{ months_kept_config() }}
-- depends_on: {{ ref('int_customer_tier_months') }} (the months computed: macros/months.sql)
-- Customers, revenue and revenue share per final tier and month (shares sum to 1 per month
-- whenever the month has revenue). Kept per month, like customer_tier_monthly (macros/months.sql).
with tier_months as (
    select * from {{ ref('customer_tier_monthly') }}
    {%- if is_incremental() %}
    where month in ({{ months_rebuilt() }})
    {%- endif %}
),

per_tier as (
    select
        month,
        final_tier,
        value_measure,
        count(*) as customer_count,
        count(case when is_active then 1 end) as active_customer_count,
        count(case when is_key_account then 1 end) as key_account_count,
        sum(net_revenue) as net_revenue,
        -- one run computes a month, so its rows agree
        bool_or(is_provisional) as is_provisional
    from tier_months
    group by month, final_tier, value_measure
)

select
    month,
    final_tier,
    customer_count,
    active_customer_count,
    key_account_count,
    value_measure,
    net_revenue,
    coalesce(
        cast(net_revenue as {{ double_type() }})
        / nullif(cast(sum(net_revenue) over (partition by month) as {{ double_type() }}), 0),
        0
    )
        as revenue_share,
    is_provisional
from per_tier
