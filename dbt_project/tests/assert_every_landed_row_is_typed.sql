-- Nothing lost between landing and staging: each partition file the run reads holds as many rows
-- as its staging model typed from it (the landing manifest's row count).
with typed as (
    {%- for table in ['customers', 'orders', 'invoices', 'payments', 'fx_rates', 'tier_overrides'] %}
    select
        '{{ table }}' as table_name,
        landing_file,
        count(*) as typed_rows
    from {{ ref('stg_landing__' ~ table) }}
    group by landing_file
    {{- '\n    union all' if not loop.last }}
    {%- endfor %}
)

select
    partitions.table_name,
    partitions.landing_file,
    partitions.rows,
    typed.typed_rows
from {{ source('landing', 'partitions') }} as partitions
left join typed
    on partitions.table_name = typed.table_name and partitions.landing_file = typed.landing_file
where partitions.rows <> coalesce(typed.typed_rows, 0)
