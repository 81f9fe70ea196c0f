-- Every landed row the month computed rejects, with the rule it breaks, its reason, its source
-- file and line and its values: the rows rejected by their own row rule (stg_landing__*) and
-- those rejected by the month's rules (int_*__checked). Kept for every run (delete+insert by
-- run): a month's valid rows plus these are every row it read.
{{ replace_by_key_config('run_id') }}

with rejected as (
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
    where {{ in_month_reach() }} and rejection_rule is not null
    {{- '\n    union all' if not loop.last }}
    {%- endfor %}
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
