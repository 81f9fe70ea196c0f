-- Every landed customer version, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. Personal data (name, e-mail, phone) is landed
-- apart (tiering.landing) and never read here.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('customers') }}") }}

with landed as (
    select * from {{ source('landing', 'customers') }}
    where landing_file in ({{ landed_files_to_type('customers') }})
),

read as (
    select
        *,
        {{ read_timestamp('created_at') }} as created_at_read,
        {{ read_timestamp('updated_at') }} as updated_at_read
    from landed
),

{%- set checks = column_checks(
        required=['customer_id', 'customer_kind', 'created_at', 'updated_at'],
        timestamps={'created_at': 'created_at_read', 'updated_at': 'updated_at_read'},
        enums={'customer_kind': ['individual', 'organisation']}) %}

checked as (
    select
        *,
        {{ first_broken_rule(checks) }}
    from read
),

conflicting as (
    -- same customer and updated_at, different values (by the landed row hash `_hash`
    -- of every landed text value): no version can be told the latest
    select
        customer_id,
        updated_at_read
    from checked
    where rejection_rule is null
    group by customer_id, updated_at_read
    having min(_hash) <> max(_hash)
)

select
    checked.customer_id,
    nullif(trim(checked.region), '') as region,
    nullif(trim(checked.industry), '') as industry,
    checked.customer_kind,
    nullif(trim(checked.parent_customer_id), '') as parent_customer_id,
    checked.created_at_read as created_at,
    checked.updated_at_read as updated_at,
    coalesce(checked.rejection_rule, case when conflicting.customer_id is not null then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(checked.rejection_reason, case
        when conflicting.customer_id is not null
            then 'conflicting versions: same customer_id and updated_at, different values'
    end) as rejection_reason,
    case
        when checked.rejection_rule is not null or conflicting.customer_id is not null
            then {{ json_record(record_columns('customers'), 'checked') }}
    end as rejected_record,
    checked._source_file as source_file,
    checked._source_line as source_line,
    checked.landing_partition,
    checked.landing_file
from checked
left join conflicting
    on checked.customer_id = conflicting.customer_id and checked.updated_at_read = conflicting.updated_at_read
