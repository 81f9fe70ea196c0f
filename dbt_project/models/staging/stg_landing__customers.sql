-- Every landed customer version, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. Personal data (name, e-mail, phone) is landed
-- apart (tiering.landing) and never read here.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('customers') }}") }}

with landed as (
    -- the landed files of the change log this model has not typed yet
    select * from {{ landed_rows('customers') }}
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

versions as (
    -- valid rows of the same customer and updated_at whose values differ (their landed row hashes
    -- `_hash`, of every landed text value, differ): no version can be told the latest
    select
        *,
        min(case when rejection_rule is null then _hash end) over (partition by customer_id, updated_at_read)
        <> max(case when rejection_rule is null then _hash end) over (partition by customer_id, updated_at_read)
            as is_conflicting
    from checked
)

select
    versions.customer_id,
    nullif(trim(versions.region), '') as region,
    nullif(trim(versions.industry), '') as industry,
    versions.customer_kind,
    nullif(trim(versions.parent_customer_id), '') as parent_customer_id,
    versions.created_at_read as created_at,
    versions.updated_at_read as updated_at,
    coalesce(versions.rejection_rule, case when versions.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(versions.rejection_reason, case
        when versions.is_conflicting
            then 'conflicting versions: same customer_id and updated_at, different values'
    end) as rejection_reason,
    case
        when versions.rejection_rule is not null or versions.is_conflicting
            then
                {{ json_record(record_columns('customers'), 'versions') }}
    end as rejected_record,
    versions._source_file as source_file,
    versions._source_line as source_line,
    versions.landing_partition,
    versions.landing_file
from versions
