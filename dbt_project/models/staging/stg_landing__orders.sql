-- Every landed order row, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. The rules that depend on the month computed
-- (dates after it, fx rates, unknown customers) are applied in int_orders__checked.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('orders', chained=true) }}") }}

with landed as (
    select * from {{ source('landing', 'orders') }}
    where landing_file in ({{ landed_files_to_type('orders', chained=true) }})
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
            as is_conflicting,
        max(case when rejection_rule is null then _source_line end) over (partition by order_id, updated_at_read)
            as last_valid_line
    from checked
),

-- the order versions typed now: one per id and updated_at, a valid row (the last line
-- of identical rows)
typed_versions as (
    select
        order_id,
        updated_at_read as updated_at
    from versions
    where rejection_rule is null and not is_conflicting and _source_line = last_valid_line
),

-- the versions of the same orders typed by earlier runs, all in earlier partitions (the pre-hook
-- drops the partitions after the earliest one typed now, which are then typed again)
earlier_versions as (
    {%- if is_incremental() %}
    select order_id, updated_at
    from {{ this }}
    where is_version and order_id in (select typed_versions.order_id from typed_versions)
    {%- else %}
    select
        order_id,
        updated_at
    from typed_versions
    where 1 = 0
    {%- endif %}
),

-- each version with the updated_at of the order's version before it: a month's as-of keeps the
-- versions in its reach that no later version there names as its previous one
version_chain as (
    select
        order_id,
        updated_at,
        lag(updated_at) over (partition by order_id order by updated_at) as previous_updated_at
    from (
        select * from typed_versions
        union all
        select * from earlier_versions
    ) as all_versions
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
    versions.landing_file,
    version_chain.order_id is not null as is_version,
    version_chain.previous_updated_at
from versions
left join version_chain
    on
        versions.order_id = version_chain.order_id
        and versions.updated_at_read = version_chain.updated_at
        and versions.rejection_rule is null
        and not versions.is_conflicting
        and versions._source_line = versions.last_valid_line
