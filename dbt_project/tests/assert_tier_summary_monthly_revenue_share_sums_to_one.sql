{{ config(tags=['full_history']) }}
-- Per month with revenue, the tiers' revenue shares sum to 1 (abs. difference < 1e-9); a month
-- without revenue has shares 0. Returns the offending months.
select
    month,
    sum(net_revenue) as net_revenue,
    sum(revenue_share) as revenue_share_total
from {{ ref('tier_summary_monthly') }}
group by month
having (sum(net_revenue) > 0 and abs(sum(revenue_share) - 1) >= 1e-9)
    or (sum(net_revenue) = 0 and sum(revenue_share) <> 0)
