{{ staging_config('override_id') }}
-- Latest valid version of each manual tier override as of the month end (kept incrementally:
-- macros/staging.sql).
{%- set columns = ['override_id', 'customer_id', 'override_tier', 'override_reason', 'override_approver',
                   'valid_from_month', 'valid_until_month', 'updated_at'] %}
with source_rows as (
    -- this run's batch of raw.tier_overrides
    {{ run_batch_rows('tier_overrides') }}
),

renamed as (
    select
        override_id,
        customer_id,
        tier as override_tier,
        reason as override_reason,
        approver as override_approver,
        cast(valid_from || '-01' as date) as valid_from_month,
        cast(nullif(trim(valid_until), '') || '-01' as date) as valid_until_month,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        _row_key as row_key
    from source_rows
),

candidates as (
    select * from renamed
    {{- union_held_versions('override_id', columns) }}
),

{{ latest_versions('override_id', columns) }}
