{{ months_kept_config() }}
-- depends_on: {{ ref('int_customer_tier_months') }} (the months computed: macros/months.sql)
-- The migration matrix: per month, how many customers (and how much revenue) moved from each
-- tier of the previous month to each tier of this month. New customers come from '(new)',
-- customers who lost all value in the window go to '(lapsed)'. Kept per month, like
-- customer_tier_monthly (macros/months.sql): a month's rows carry their previous tier.
with tier_months as (
    select * from {{ ref('customer_tier_monthly') }}
    {%- if is_incremental() %}
    where month in ({{ months_rebuilt() }})
    {%- endif %}
)

select
    month,
    coalesce(previous_final_tier, '(new)') as from_tier,
    case when movement = 'lapsed' then '(lapsed)' else final_tier end as to_tier,
    movement,
    count(*) as customer_count,
    sum(net_revenue) as net_revenue
from tier_months
group by
    month, coalesce(previous_final_tier, '(new)'), case when movement = 'lapsed' then '(lapsed)' else final_tier end,
    movement
