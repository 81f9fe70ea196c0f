{{ config(materialized='view', schema='intermediate') }}
-- The time spine MetricFlow (dbt's semantic layer) needs to parse the metrics in
-- models/marts/_semantic_models.yml: one row per month, 2000-01 .. 2083-04 (1,000 months from the
-- spine's start), far wider than any data. Months are the finest grain of the marts. A view:
-- building it costs nothing, and it is not a BI table (schema intermediate, never published).
with digits as (
    select 0 as digit
    union all
    select 1
    union all
    select 2
    union all
    select 3
    union all
    select 4
    union all
    select 5
    union all
    select 6
    union all
    select 7
    union all
    select 8
    union all
    select 9
),

month_offsets as (
    select hundreds.digit * 100 + tens.digit * 10 + ones.digit as month_offset
    from digits as hundreds
    cross join digits as tens
    cross join digits as ones
)

select cast({{ dbt.dateadd('month', 'month_offset', "cast('2000-01-01' as date)") }} as date) as date_month
from month_offsets
