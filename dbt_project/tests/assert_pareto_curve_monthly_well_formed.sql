-- The Pareto curve per month: one point per percentile 1..100, both cumulative shares in (0, 1]
-- and never decreasing, and the last point at (1, 1): all ranked customers hold all the value.
-- In the months the run rebuilt (macros/months.sql). Returns the offending points.
with points as (
    select
        *,
        count(*) over (partition by month, customer_percentile) as points_here,
        lag(cumulative_customer_share) over month_curve as previous_customer_share,
        lag(cumulative_revenue_share) over month_curve as previous_revenue_share,
        max(customer_percentile) over (partition by month) as last_percentile
    from {{ ref('pareto_curve_monthly') }}
    where month in ({{ months_rebuilt() }})
    window month_curve as (partition by month order by customer_percentile)
)

select
    month,
    customer_percentile,
    cumulative_customer_share,
    cumulative_revenue_share
from points
where
    points_here > 1
    or customer_percentile not between 1 and 100
    or not (cumulative_customer_share > 0 and cumulative_customer_share <= 1 + 1e-9)
    or not (cumulative_revenue_share > 0 and cumulative_revenue_share <= 1 + 1e-9)
    or cumulative_customer_share < previous_customer_share
    or cumulative_revenue_share < previous_revenue_share - 1e-12
    or (
        customer_percentile = last_percentile
        and (abs(cumulative_customer_share - 1) >= 1e-9 or abs(cumulative_revenue_share - 1) >= 1e-9)
    )
