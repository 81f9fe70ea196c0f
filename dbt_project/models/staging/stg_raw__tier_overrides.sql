-- Latest valid version of each manual tier override as of the month end.
with batch as (
    select row_key
    from {{ source('raw', 'batch_rows') }}
    where batch_id = {{ lit(var('batch_id')) }} and source_table = 'tier_overrides'
),

source_rows as (
    select tier_overrides.*
    from {{ source('raw', 'tier_overrides') }} as tier_overrides
    inner join batch on batch.row_key = tier_overrides._row_key
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

versioned as (
    select
        *,
        row_number() over (partition by override_id order by updated_at desc, row_key) as version_rank
    from renamed
    where updated_at < {{ as_of_cutoff() }}
)

select
    override_id, customer_id, override_tier, override_reason, override_approver,
    valid_from_month, valid_until_month, updated_at
from versioned
where version_rank = 1
