-- Every landed manual tier override version, typed once per landed partition, and marked valid
-- (rejection_rule null) or rejected with the first rule it breaks. Unknown customers are
-- rejected in int_tier_overrides__checked, for the month computed.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('tier_overrides') }}") }}

with landed as (
    -- the landed files of the change log this model has not typed yet
    select * from {{ landed_rows('tier_overrides') }}
),

read as (
    select
        *,
        {{ read_month('valid_from') }} as valid_from_read,
        {{ read_month('valid_until') }} as valid_until_read,
        {{ read_timestamp('updated_at') }} as updated_at_read
    from landed
),

{%- set checks = column_checks(
        required=['override_id', 'customer_id', 'tier', 'reason', 'approver', 'valid_from', 'updated_at'],
        timestamps={'updated_at': 'updated_at_read'},
        months={'valid_from': 'valid_from_read', 'valid_until': 'valid_until_read'},
        enums={'tier': ['A', 'B', 'C', 'D']})
    + [('personal_data_in_free_text', contains_personal_data('reason'),
        "'''reason'' holds personal data (an e-mail address or phone number): write it without contact details'")] %}

checked as (
    select
        *,
        {{ first_broken_rule(checks) }}
    from read
),

versions as (
    -- valid rows of the same override and updated_at whose values differ (their landed row hashes
    -- `_hash`, of every landed text value, differ): no version can be told the latest
    select
        *,
        min(case when rejection_rule is null then _hash end) over (partition by override_id, updated_at_read)
        <> max(case when rejection_rule is null then _hash end) over (partition by override_id, updated_at_read)
            as is_conflicting
    from checked
)

select
    versions.override_id,
    versions.customer_id,
    versions.tier as override_tier,
    versions.reason as override_reason,
    versions.approver as override_approver,
    versions.valid_from_read as valid_from_month,
    versions.valid_until_read as valid_until_month,
    versions.updated_at_read as updated_at,
    coalesce(versions.rejection_rule, case when versions.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(versions.rejection_reason, case
        when versions.is_conflicting
            then 'conflicting versions: same override_id and updated_at, different values'
    end) as rejection_reason,
    -- (the reason of a rejected row may hold personal data: the record leaves it out)
    case
        when versions.rejection_rule is not null or versions.is_conflicting
            then {{ json_record(record_columns('tier_overrides'), 'versions') }}
    end as rejected_record,
    versions._source_file as source_file,
    versions._source_line as source_line,
    versions.landing_partition,
    versions.landing_file
from versions
