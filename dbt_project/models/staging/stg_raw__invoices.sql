{{ staging_config('invoice_id') }}
-- Latest valid version of each invoice as of the month end (kept incrementally: macros/staging.sql).
{%- set columns = ['invoice_id', 'order_id', 'customer_id', 'issued_on', 'due_on', 'amount_due', 'currency',
                   'updated_at'] %}
with source_rows as (
    -- this run's batch of raw.invoices
    {{ run_batch_rows('invoices') }}
),

renamed as (
    select
        invoice_id,
        nullif(trim(order_id), '') as order_id,
        customer_id,
        cast(issued_on as date) as issued_on,
        cast(due_on as date) as due_on,
        cast(amount_due as decimal(18, 4)) as amount_due,
        currency,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        _row_key as row_key
    from source_rows
),

candidates as (
    select * from renamed
    {{- union_held_versions('invoice_id', columns) }}
),

{{ latest_versions('invoice_id', columns) }}
