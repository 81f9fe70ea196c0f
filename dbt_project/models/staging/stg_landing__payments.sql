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

conflicting as (
    -- same payment and updated_at, different values (by the landed row hash `_hash`
    -- of every landed text value): no version can be told the latest
    select
        payment_id,
        updated_at_read
    from checked
    where rejection_rule is null
    group by payment_id, updated_at_read
    having min(_hash) <> max(_hash)
)

select
    checked.payment_id,
    checked.invoice_id,
    checked.paid_at_read as paid_at,
    checked.amount_read as amount,
    checked.updated_at_read as updated_at,
    coalesce(checked.rejection_rule, case when conflicting.payment_id is not null then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(checked.rejection_reason, case
        when conflicting.payment_id is not null
            then 'conflicting versions: same payment_id and updated_at, different values'
    end) as rejection_reason,
    case
        when checked.rejection_rule is not null or conflicting.payment_id is not null
            then {{ json_record(record_columns('payments'), 'checked') }}
    end as rejected_record,
    checked._source_file as source_file,
    checked._source_line as source_line,
    checked.landing_partition,
    checked.landing_file
from checked
left join conflicting
    on checked.payment_id = conflicting.payment_id and checked.updated_at_read = conflicting.updated_at_read
