-- Monthly fx rates to the reporting currency (no versions: one row per currency and month).
with source_rows as (
    -- this run's batch of raw.fx_rates
    {{ run_batch_rows('fx_rates') }}
),

renamed as (
    select
        currency,
        cast(month || '-01' as date) as rate_month,
        cast(rate_to_reporting as decimal(18, 8)) as rate_to_reporting,
        _row_key as row_key
    from source_rows
),

deduplicated as (
    select
        *,
        row_number() over (partition by currency, rate_month order by row_key) as version_rank
    from renamed
)

select
    currency,
    rate_month,
    rate_to_reporting
from deduplicated
where version_rank = 1
