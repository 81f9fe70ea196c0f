{{ staging_config('payment_id') }}
-- Latest valid version of each payment as of the month end (kept incrementally: macros/staging.sql).
{%- set columns = ['payment_id', 'invoice_id', 'paid_at', 'amount', 'updated_at'] %}
with source_rows as (
    -- this run's batch of raw.payments
    {{ run_batch_rows('payments') }}
),

renamed as (
    select
        payment_id,
        invoice_id,
        {{ to_utc_timestamp('paid_at') }} as paid_at,
        cast(amount as decimal(18, 4)) as amount,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        _row_key as row_key
    from source_rows
),

candidates as (
    select * from renamed
    {{- union_held_versions('payment_id', columns) }}
),

{{ latest_versions('payment_id', columns) }}
