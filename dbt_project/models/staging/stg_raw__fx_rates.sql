-- Monthly fx rates to the reporting currency (no versions: one row per currency and month).
with batch as (
    select row_key
    from {{ source('raw', 'batch_rows') }}
    where batch_id = {{ lit(var('batch_id')) }} and source_table = 'fx_rates'
),

source_rows as (
    select fx_rates.*
    from {{ source('raw', 'fx_rates') }} as fx_rates
    inner join batch on batch.row_key = fx_rates._row_key
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
    select *, row_number() over (partition by currency, rate_month order by row_key) as version_rank
    from renamed
)

select currency, rate_month, rate_to_reporting
from deduplicated
where version_rank = 1
