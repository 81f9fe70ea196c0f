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

versions as (
    -- valid rows of the same order and updated_at whose values differ (their landed row hashes
    -- `_hash`, of every landed text value, differ): no version can be told the latest
    select
        *,
        min(case when rejection_rule is null then _hash end) over (partition by order_id, updated_at_read)
        <> max(case when rejection_rule is null then _hash end) over (partition by order_id, updated_at_read)
            as is_conflicting
    from checked
)

select
    versions.order_id,
    versions.customer_id,
    versions.ordered_at_read as ordered_at,
    versions.status as order_status,
    versions.currency,
    versions.amount_read as amount,
    versions.cost_read as cost,
    nullif(trim(versions.original_order_id), '') as original_order_id,
    versions.updated_at_read as updated_at,
    coalesce(versions.rejection_rule, case when versions.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(versions.rejection_reason, case
        when versions.is_conflicting
            then 'conflicting versions: same order_id and updated_at, different values'
    end) as rejection_reason,
    case
        when versions.rejection_rule is not null or versions.is_conflicting
            then {{ json_record(record_columns('orders'), 'versions') }}
    end as rejected_record,
    versions._source_file as source_file,
    versions._source_line as source_line,
    versions.landing_partition,
    versions.landing_file
from versions
