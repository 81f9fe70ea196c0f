-- Latest valid version of each customer as of the month end. Personal data (name, email,
-- phone) is deliberately not selected: it never leaves the raw schema.
with source_rows as (
    -- this run's batch of raw.customers
    {{ run_batch_rows('customers') }}
),

renamed as (
    select
        customer_id,
        nullif(trim(region), '') as region,
        nullif(trim(industry), '') as industry,
        customer_kind,
        nullif(trim(parent_customer_id), '') as parent_customer_id,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        _row_key as row_key
    from source_rows
),

versioned as (
    select
        *,
        min(updated_at) over (partition by customer_id) as first_seen_at,
        row_number() over (partition by customer_id order by updated_at desc, row_key) as version_rank
    from renamed
    where updated_at < {{ as_of_cutoff() }}
)

select
    customer_id,
    region,
    industry,
    customer_kind,
    parent_customer_id,
    created_at,
    first_seen_at,
    updated_at
from versioned
where version_rank = 1
