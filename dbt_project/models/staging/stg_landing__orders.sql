-- Every landed order row, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. The rules that depend on the month computed
-- (dates after it, fx rates, unknown customers) are applied in int_orders__checked.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('orders', chained=true) }}") }}

with landed as {{ not_materialized() }} (
    -- the landed files of the change log this model has not typed yet (read again by each
    -- branch of version_chain, instead of written out whole first)
    select * from {{ landed_rows('orders', version_key='order_id') }}
),

read as (
    select
        *,
        {{ read_timestamp('ordered_at') }} as ordered_at_read,
        {{ read_decimal('amount') }} as amount_read,
        {{ read_decimal('cost') }} as cost_read,
        {{ read_timestamp('updated_at') }} as updated_at_read
    from landed
),

{%- set checks = column_checks(
        required=['order_id', 'customer_id', 'ordered_at', 'status', 'currency', 'amount', 'updated_at'],
        timestamps={'ordered_at': 'ordered_at_read', 'updated_at': 'updated_at_read'},
        amounts={'amount': 'amount_read', 'cost': 'cost_read'},
        enums={'status': ['completed', 'cancelled', 'returned', 'credit_note']},
        signed=['amount'])
    + [('negative_amount', "status <> 'credit_note' and amount_read < 0",
        "'negative amount in ''amount'': ' || amount || ' (only a credit_note may be negative)'"),
       ('positive_credit_note', "status = 'credit_note' and amount_read > 0",
        "'a credit_note must have an amount of zero or less, got ' || amount")] %}

checked as (
    select
        *,
        {{ first_broken_rule(checks) }}
    from read
),

-- is_conflicting, is_version and previous_updated_at (macro version_chain)
{{ version_chain('order_id') }}

select
    chained.order_id,
    chained.customer_id,
    chained.ordered_at_read as ordered_at,
    chained.status as order_status,
    chained.currency,
    chained.amount_read as amount,
    chained.cost_read as cost,
    nullif(trim(chained.original_order_id), '') as original_order_id,
    chained.updated_at_read as updated_at,
    coalesce(chained.rejection_rule, case when chained.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(chained.rejection_reason, case
        when chained.is_conflicting
            then 'conflicting versions: same order_id and updated_at, different values'
    end) as rejection_reason,
    case
        when chained.rejection_rule is not null or chained.is_conflicting
            then {{ json_record(record_columns('orders'), 'chained') }}
    end as rejected_record,
    chained._source_file as source_file,
    chained._source_line as source_line,
    chained.landing_partition,
    chained.landing_file,
    chained.is_version,
    chained.previous_updated_at
from chained
