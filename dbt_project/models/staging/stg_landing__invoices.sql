-- Every landed invoice version, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. The rules that depend on the month computed
-- (issue dates after it, fx rates, unknown customers) are applied in int_invoices__checked.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('invoices', chained=true) }}") }}

with landed as {{ not_materialized() }} (
    -- the landed files of the change log this model has not typed yet (read again by each
    -- branch of version_chain, instead of written out whole first)
    select * from {{ landed_rows('invoices', version_key='invoice_id') }}
),

read as (
    select
        *,
        {{ read_date('issued_on') }} as issued_on_read,
        {{ read_date('due_on') }} as due_on_read,
        {{ read_decimal('amount_due') }} as amount_due_read,
        {{ read_timestamp('updated_at') }} as updated_at_read
    from landed
),

{%- set checks = column_checks(
        required=['invoice_id', 'customer_id', 'issued_on', 'due_on', 'amount_due', 'currency', 'updated_at'],
        timestamps={'updated_at': 'updated_at_read'},
        dates={'issued_on': 'issued_on_read', 'due_on': 'due_on_read'},
        amounts={'amount_due': 'amount_due_read'})
    + [('due_before_issue', 'due_on_read < issued_on_read',
        "'due_on ' || due_on || ' is before issued_on ' || issued_on")] %}

checked as (
    select
        *,
        {{ first_broken_rule(checks) }}
    from read
),

-- is_conflicting, is_version and previous_updated_at (macro version_chain)
{{ version_chain('invoice_id') }}

select
    chained.invoice_id,
    nullif(trim(chained.order_id), '') as order_id,
    chained.customer_id,
    chained.issued_on_read as issued_on,
    chained.due_on_read as due_on,
    chained.amount_due_read as amount_due,
    chained.currency,
    chained.updated_at_read as updated_at,
    coalesce(chained.rejection_rule, case when chained.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(chained.rejection_reason, case
        when chained.is_conflicting
            then 'conflicting versions: same invoice_id and updated_at, different values'
    end) as rejection_reason,
    case
        when chained.rejection_rule is not null or chained.is_conflicting
            then
                {{ json_record(record_columns('invoices'), 'chained') }}
    end as rejected_record,
    chained._source_file as source_file,
    chained._source_line as source_line,
    chained.landing_partition,
    chained.landing_file,
    chained.is_version,
    chained.previous_updated_at
from chained
