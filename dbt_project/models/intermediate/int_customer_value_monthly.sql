-- Value measures per customer known at the month end, over the trailing value window.
-- Completed orders count (the latest version of a cancelled or returned order counts nothing), and
-- credit notes (returns booked as their own lines, amount zero or less) count against them in the
-- month of their ordered_at, whichever month the order they return was in. Credit notes change
-- value and margin only: order count, first and last order, recency and the earlier purchase of
-- the dormant rule are the completed orders' (docs/rules.md).
with customers as (
    select * from {{ ref('int_customers__as_of') }}
),

value_lines as (
    select *
    from {{ ref('int_orders__in_reporting_currency') }}
    where order_status in ('completed', 'credit_note')
),

completed_orders as (
    select *
    from value_lines
    where order_status = 'completed'
),

window_lines as (
    select *
    from value_lines
    where
        ordered_at >= date '{{ var("value_window_start") }}'
        and ordered_at < {{ next_month_start() }}
),

value_in_window as (
    select
        customer_id,
        sum(amount_reporting) as net_revenue,
        count(case when order_status = 'completed' then 1 end) as order_count,
        -- amount - cost over the lines with a known cost (a credit note's cost is negative:
        -- int_orders__in_reporting_currency); a line with an unknown cost adds nothing
        sum(case when cost_reporting is not null then amount_reporting - cost_reporting end) as gross_margin,
        -- booked amounts (sales and returns alike, by size) with and without a known cost
        sum(case when cost_reporting is not null then abs(amount_reporting) end) as booked_with_known_cost,
        sum(abs(amount_reporting)) as booked_amount
    from window_lines
    group by customer_id
),

order_history as (
    select
        customer_id,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        -- a positive-value purchase at any time up to the month end (value.dormant_tier)
        bool_or(amount_reporting > 0) as has_positive_purchase
    from completed_orders
    group by customer_id
)

select
    customers.customer_id,
    {{ month_start() }} as month,
    customers.region,
    customers.industry,
    customers.customer_kind,
    customers.parent_customer_id,
    customers.created_at,
    customers.first_seen_at,
    coalesce(value_in_window.net_revenue, 0) as net_revenue,
    coalesce(value_in_window.order_count, 0) as order_count,
    value_in_window.gross_margin,
    case
        when value_in_window.net_revenue > 0
            then
                cast(value_in_window.booked_with_known_cost as {{ double_type() }})
                / cast(value_in_window.booked_amount as {{ double_type() }})
    end as cost_known_share,
    -- net revenue per completed order: credit notes lower it (zero or negative when the window's
    -- returns reach its sales), they do not count as orders
    case
        when value_in_window.order_count > 0
            then
                {{ double_to_decimal('cast(value_in_window.net_revenue as ' ~ double_type() ~ ')'
                                     ~ ' / value_in_window.order_count', 18, 4) }}
    end as avg_order_value,
    cast(order_history.first_order_at as date) as first_order_date,
    cast(order_history.last_order_at as date) as last_order_date,
    coalesce(order_history.has_positive_purchase, false) as has_positive_purchase,
    -- (dbt.datediff renders on one line longer than the limit)
    {{ dbt.datediff('cast(order_history.last_order_at as date)', month_last_day(), 'day') }} as recency_days, -- noqa: LT05
    greatest({{ dbt.datediff('cast(customers.created_at as date)', month_last_day(), 'month') }}, 0) as tenure_months
from customers
left join value_in_window on value_in_window.customer_id = customers.customer_id
left join order_history on order_history.customer_id = customers.customer_id
