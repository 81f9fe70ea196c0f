-- Every landed order row, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. The rules that depend on the month computed
-- (dates after it, fx rates, unknown customers) are applied in int_orders__checked.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('orders') }}") }}

with landed as (
    select * from {{ source('landing', 'orders') }}
    where landing_file in ({{ landed_files_to_type('orders') }})
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

conflicting as (
    -- same order and updated_at, different values (by the landed row hash `_hash`
    -- of every landed text value): no version can be told the latest
    select
        order_id,
        updated_at_read
    from checked
    where rejection_rule is null
    group by order_id, updated_at_read
    having min(_hash) <> max(_hash)
)

select
    checked.order_id,
    checked.customer_id,
    checked.ordered_at_read as ordered_at,
    checked.status as order_status,
    checked.currency,
    checked.amount_read as amount,
    checked.cost_read as cost,
    nullif(trim(checked.original_order_id), '') as original_order_id,
    checked.updated_at_read as updated_at,
    coalesce(checked.rejection_rule, case when conflicting.order_id is not null then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(checked.rejection_reason, case
        when conflicting.order_id is not null
            then 'conflicting versions: same order_id and updated_at, different values'
    end) as rejection_reason,
    case
        when checked.rejection_rule is not null or conflicting.order_id is not null
            then {{ json_record(record_columns('orders'), 'checked') }}
    end as rejected_record,
    checked._source_file as source_file,
    checked._source_line as source_line,
    checked.landing_partition,
    checked.landing_file
from checked
left join conflicting
    on checked.order_id = conflicting.order_id and checked.updated_at_read = conflicting.updated_at_read
