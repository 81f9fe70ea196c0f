{{ staging_config('order_id') }}
-- Latest valid version of each order as of the month end (kept incrementally: macros/staging.sql).
{%- set columns = ['order_id', 'customer_id', 'ordered_at', 'order_status', 'currency', 'amount', 'cost',
                   'updated_at'] %}
with source_rows as (
    -- this run's batch of raw.orders
    {{ run_batch_rows('orders') }}
),

renamed as (
    select
        order_id,
        customer_id,
        {{ to_utc_timestamp('ordered_at') }} as ordered_at,
        status as order_status,
        currency,
        cast(amount as decimal(18, 4)) as amount,
        cast(nullif(trim(cost), '') as decimal(18, 4)) as cost,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        _row_key as row_key
    from source_rows
),

candidates as (
    select * from renamed
    {{- union_held_versions('order_id', columns) }}
),

{{ latest_versions('order_id', columns) }}
