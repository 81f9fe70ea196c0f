-- Every landed payment version, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. The rules that depend on the month computed
-- (payments after it, unknown invoices) are applied in int_payments__checked.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('payments') }}") }}

with landed as (
    select * from {{ source('landing', 'payments') }}
    where landing_file in ({{ landed_files_to_type('payments') }})
),

read as (
    select
        *,
        {{ read_timestamp('paid_at') }} as paid_at_read,
        {{ read_decimal('amount') }} as amount_read,
        {{ read_timestamp('updated_at') }} as updated_at_read
    from landed
),

{%- set checks = column_checks(
        required=['payment_id', 'invoice_id', 'paid_at', 'amount', 'updated_at'],
        timestamps={'paid_at': 'paid_at_read', 'updated_at': 'updated_at_read'},
        amounts={'amount': 'amount_read'}) %}

checked as (
    select
        *,
        {{ first_broken_rule(checks) }}
    from read
),

versions as (
    -- valid rows of the same payment and updated_at whose values differ (their landed row hashes
    -- `_hash`, of every landed text value, differ): no version can be told the latest
    select
        *,
        min(case when rejection_rule is null then _hash end) over (partition by payment_id, updated_at_read)
        <> max(case when rejection_rule is null then _hash end) over (partition by payment_id, updated_at_read)
            as is_conflicting
    from checked
)

select
    versions.payment_id,
    versions.invoice_id,
    versions.paid_at_read as paid_at,
    versions.amount_read as amount,
    versions.updated_at_read as updated_at,
    coalesce(versions.rejection_rule, case when versions.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(versions.rejection_reason, case
        when versions.is_conflicting
            then 'conflicting versions: same payment_id and updated_at, different values'
    end) as rejection_reason,
    case
        when versions.rejection_rule is not null or versions.is_conflicting
            then {{ json_record(record_columns('payments'), 'versions') }}
    end as rejected_record,
    versions._source_file as source_file,
    versions._source_line as source_line,
    versions.landing_partition,
    versions.landing_file
from versions
