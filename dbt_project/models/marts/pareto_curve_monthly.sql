{{ months_kept_config() }}
-- depends_on: {{ ref('int_customer_tier_months') }} (the months computed: macros/months.sql)
-- The Pareto curve for charts: per month and customer percentile (1..100, by value rank among
-- customers with positive value), the cumulative share of customers and of revenue. Kept per
-- month, like customer_tier_monthly (macros/months.sql).
with ranked as (
    select
        month,
        value_rank,
        cumulative_share,
        count(*) over (partition by month) as ranked_customers
    from {{ ref('customer_tier_monthly') }}
    where value_rank is not null
    {%- if is_incremental() %}
        and month in ({{ months_rebuilt() }})
    {%- endif %}
),

percentiles as (
    select
        month,
        cast(ceil(value_rank * 100.0 / ranked_customers) as integer) as customer_percentile,
        max(value_rank) as customers_up_to,
        max(ranked_customers) as ranked_customers,
        max(cumulative_share) as cumulative_revenue_share
    from ranked
    group by month, cast(ceil(value_rank * 100.0 / ranked_customers) as integer)
)

select
    month,
    customer_percentile,
    cast(customers_up_to as {{ double_type() }}) / ranked_customers as cumulative_customer_share,
    cumulative_revenue_share
from percentiles
