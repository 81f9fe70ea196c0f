{{ staging_config('customer_id') }}
-- Latest valid version of each customer as of the month end (kept incrementally:
-- macros/staging.sql). Personal data (name, email, phone) is deliberately not selected: it
-- never leaves the raw schema.
{%- set columns = ['customer_id', 'region', 'industry', 'customer_kind', 'parent_customer_id', 'created_at',
                   'first_seen_at', 'updated_at'] %}
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
        -- the first version's updated_at, once ranked below (a version held keeps its own)
        {{ to_utc_timestamp('updated_at') }} as first_seen_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        _row_key as row_key
    from source_rows
),

candidates as (
    -- every touched id's held version: its first_seen_at is the customer's, however old
    select * from renamed
    {{- union_held_versions('customer_id', columns, every_id=true) }}
),

versioned as (
    select
        customer_id,
        region,
        industry,
        customer_kind,
        parent_customer_id,
        created_at,
        updated_at,
        min(first_seen_at) over (partition by customer_id) as first_seen_at,
        row_number() over (partition by customer_id order by updated_at desc, row_key asc) as version_rank
    from candidates
    where updated_at < {{ as_of_cutoff() }}
)

select {{ columns | join(', ') }}, {{ staged_before() }}
from versioned
where version_rank = 1
