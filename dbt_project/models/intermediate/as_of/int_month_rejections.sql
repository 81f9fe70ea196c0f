-- The landed versions the month's rules reject (int_*__checked: a business date after the month's
-- end, no fx rate, an unknown customer or invoice as of the month's end), of every table, with the
-- landed file and line each comes from: quarantine.rejected_rows reads their landed values there,
-- from these files only. (The rows a row rule rejects are not here: staging keeps their values.)
{%- for table in ['orders', 'invoices', 'payments', 'tier_overrides'] %}
select
    '{{ table }}' as source_table,
    source_file,
    source_line,
    landing_partition,
    landing_file,
    rejection_rule,
    rejection_reason
from {{ ref('int_' ~ table ~ '__checked') }}
-- (a month rule's rejection is the one without a record)
where rejection_rule is not null and rejected_record is null
{{- '\nunion all' if not loop.last }}
{%- endfor %}
