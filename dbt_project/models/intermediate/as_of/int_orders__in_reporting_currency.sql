-- Orders as of the month end with amount and cost in the reporting currency (rate of the
-- order's month; int_orders__checked rejects orders without a rate). Amount and cost are signed
-- alike: a credit note (a return booked as its own line) has an amount of zero or less, and its
-- cost, given in the source as the non-negative cost of the goods returned, is negated here, so
-- that amount - cost is the margin it takes back. A view, as int_orders__as_of: its readers
-- aggregate it (int_customer_value_monthly), and writing its rows costs more than computing them.
{{ config(materialized='view') }}

with orders as (
    select * from {{ ref('int_orders__as_of') }}
),

fx_rates as (
    select * from {{ ref('int_fx_rates__as_of') }}
),

converted as (
    select
        orders.order_id,
        orders.customer_id,
        orders.ordered_at,
        orders.order_status,
        orders.original_order_id,
        orders.currency,
        case
            when orders.currency = {{ lit(rule('reporting_currency')) }} then cast(1 as decimal(18, 8))
            else fx_rates.rate_to_reporting
        end as fx_rate,
        orders.amount,
        orders.cost
    from orders
    left join fx_rates
        on
            fx_rates.currency = orders.currency
            and fx_rates.rate_month = cast({{ dbt.date_trunc('month', 'orders.ordered_at') }} as date)
)

select
    order_id,
    customer_id,
    ordered_at,
    order_status,
    original_order_id,
    currency,
    fx_rate,
    cast(amount * fx_rate as decimal(18, 4)) as amount_reporting,
    cast(case when order_status = 'credit_note' then -cost else cost end * fx_rate as decimal(18, 4))
        as cost_reporting
from converted
where fx_rate is not null
