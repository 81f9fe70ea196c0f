-- Every landed payment version, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. The rules that depend on the month computed
-- (payments after it, unknown invoices) are applied in int_payments__checked.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('payments', chained=true) }}") }}

with landed as {{ not_materialized() }} (
    -- the landed files of the change log this model has not typed yet (read again by each
    -- branch of version_chain, instead of written out whole first)
    select * from {{ landed_rows('payments', version_key='payment_id') }}
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

-- is_conflicting, is_version and previous_updated_at (macro version_chain)
{{ version_chain('payment_id') }}

select
    chained.payment_id,
    chained.invoice_id,
    chained.paid_at_read as paid_at,
    chained.amount_read as amount,
    chained.updated_at_read as updated_at,
    coalesce(chained.rejection_rule, case when chained.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(chained.rejection_reason, case
        when chained.is_conflicting
            then 'conflicting versions: same payment_id and updated_at, different values'
    end) as rejection_reason,
    case
        when chained.rejection_rule is not null or chained.is_conflicting
            then {{ json_record(record_columns('payments'), 'chained') }}
    end as rejected_record,
    chained._source_file as source_file,
    chained._source_line as source_line,
    chained.landing_partition,
    chained.landing_file,
    chained.is_version,
    chained.previous_updated_at
from chained
