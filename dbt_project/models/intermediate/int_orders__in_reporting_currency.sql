{{ staging_config('order_id') }}
-- Orders as of the month end with amount and cost in the reporting currency
-- (rate of the order's month; the load quarantines orders without a rate). Built with staging and
-- kept the same way (macros/staging.sql): in an incremental build only the orders the run's own
-- rows touch are converted again (the rates of earlier months are unchanged in such a run): the
-- rows staging's update in place wrote, by their staged_before; converted_before tells the rows a
-- build wrote from the others.
with orders as (
    select * from {{ ref('stg_raw__orders') }}
    {%- if staging_increment() %}
    where staged_before = {{ next_month_start() }}
    {%- endif %}
),

fx_rates as (
    select * from {{ ref('stg_raw__fx_rates') }}
),

converted as (
    select
        orders.order_id,
        orders.customer_id,
        orders.ordered_at,
        orders.order_status,
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
    currency,
    fx_rate,
    cast(amount * fx_rate as decimal(18, 4)) as amount_reporting,
    cast(cost * fx_rate as decimal(18, 4)) as cost_reporting,
    {{ next_month_start() }} as converted_before
from converted
where fx_rate is not null
