-- The migration matrix: per month, how many customers (and how much revenue) moved from each
-- tier of the previous month to each tier of this month. New customers come from '(new)',
-- customers who lost all value in the window go to '(lapsed)'.
with tier_months as (
    select * from {{ ref('customer_tier_monthly') }}
)

select
    month,
    coalesce(previous_final_tier, '(new)') as from_tier,
    case when movement = 'lapsed' then '(lapsed)' else final_tier end as to_tier,
    movement,
    count(*) as customer_count,
    sum(net_revenue) as net_revenue
from tier_months
group by month, coalesce(previous_final_tier, '(new)'), case when movement = 'lapsed' then '(lapsed)' else final_tier end,
    movement
