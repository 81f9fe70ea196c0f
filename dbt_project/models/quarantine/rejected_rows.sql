-- Every landed row the month computed rejects, with the rule it breaks, its reason, its source
-- file and line and its values as landed: the rows rejected by their own row rule (stg_landing__*,
-- which keeps their landed values) and those rejected by the month's rules (int_*__checked, whose
-- landed values are read here from the change log, in the files that hold one only). Kept for
-- every run (delete+insert by run): a month's valid rows plus these are every row it read.
{{ replace_by_key_config('run_id') }}

{%- set landed_files = landed_files_by_table(ref('int_month_rejections')) %}

with row_rejections as (
    -- rejected by their own row rule, with staging's record of their landed values
    {%- for table, relation in [('customers', ref('stg_landing__customers')),
                                ('fx_rates', ref('stg_landing__fx_rates')),
                                ('tier_overrides', ref('int_tier_overrides__checked')),
                                ('orders', ref('int_orders__checked')),
                                ('invoices', ref('int_invoices__checked')),
                                ('payments', ref('int_payments__checked'))] %}
    select
        '{{ table }}' as source_table,
        source_file,
        source_line,
        landing_partition,
        rejection_rule,
        rejection_reason,
        rejected_record
    from {{ relation }}
    where {{ in_month_reach() }} and rejected_record is not null
    {{- '\n    union all' if not loop.last }}
    {%- endfor %}
),

month_rejections as (
    -- rejected by a rule of the month, with their landed values read from the change log: from
    -- the files that hold one only
    {%- for table in ['orders', 'invoices', 'payments', 'tier_overrides'] %}
    select
        rejections.source_table,
        rejections.source_file,
        rejections.source_line,
        rejections.landing_partition,
        rejections.rejection_rule,
        rejections.rejection_reason,
        -- (NULL, which the test on `record` fails, if the change log no longer held the row)
        case
            when landed.landing_file is not null then {{ json_record(record_columns(table), 'landed') }}
        end as rejected_record
    from {{ ref('int_month_rejections') }} as rejections
    left join {{ source('landing', table) }} as landed
        on
            rejections.landing_file = landed.landing_file
            and rejections.source_line = landed._source_line
            and landed.landing_file in ({{ landed_files.get(table, "''") }})
    where rejections.source_table = '{{ table }}'
    {{- '\n    union all' if not loop.last }}
    {%- endfor %}
),

rejected as (
    select * from row_rejections
    union all
    select * from month_rejections
)

select
    '{{ var("run_id") }}' as run_id,
    {{ month_start() }} as month,
    source_table,
    source_file,
    source_line,
    landing_partition,
    rejection_rule as rule,
    rejection_reason as reason,
    rejected_record as record,
    {{ dbt.current_timestamp() }} as quarantined_at
from rejected
