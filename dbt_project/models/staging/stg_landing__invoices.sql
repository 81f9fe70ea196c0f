-- Every landed invoice version, typed once per landed partition, and marked valid (rejection_rule
-- null) or rejected with the first rule it breaks. The rules that depend on the month computed
-- (issue dates after it, fx rates, unknown customers) are applied in int_invoices__checked.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('invoices', chained=true) }}") }}

with landed as (
    select * from {{ source('landing', 'invoices') }}
    where landing_file in ({{ landed_files_to_type('invoices', chained=true) }})
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

versions as (
    -- valid rows of the same invoice and updated_at whose values differ (their landed row hashes
    -- `_hash`, of every landed text value, differ): no version can be told the latest
    select
        *,
        min(case when rejection_rule is null then _hash end) over (partition by invoice_id, updated_at_read)
        <> max(case when rejection_rule is null then _hash end) over (partition by invoice_id, updated_at_read)
            as is_conflicting,
        max(case when rejection_rule is null then _source_line end) over (partition by invoice_id, updated_at_read)
            as last_valid_line
    from checked
),

-- the invoice versions typed now: one per id and updated_at, a valid row (the last line
-- of identical rows)
typed_versions as (
    select
        invoice_id,
        updated_at_read as updated_at
    from versions
    where rejection_rule is null and not is_conflicting and _source_line = last_valid_line
),

-- the versions of the same invoices typed by earlier runs, all in earlier partitions (the pre-hook
-- drops the partitions after the earliest one typed now, which are then typed again)
earlier_versions as (
    {%- if is_incremental() %}
    select invoice_id, updated_at
    from {{ this }}
    where is_version and invoice_id in (select typed_versions.invoice_id from typed_versions)
    {%- else %}
    select
        invoice_id,
        updated_at
    from typed_versions
    where 1 = 0
    {%- endif %}
),

-- each version with the updated_at of the invoice's version before it: a month's as-of keeps the
-- versions in its reach that no later version there names as its previous one
version_chain as (
    select
        invoice_id,
        updated_at,
        lag(updated_at) over (partition by invoice_id order by updated_at) as previous_updated_at
    from (
        select * from typed_versions
        union all
        select * from earlier_versions
    ) as all_versions
)

select
    versions.invoice_id,
    nullif(trim(versions.order_id), '') as order_id,
    versions.customer_id,
    versions.issued_on_read as issued_on,
    versions.due_on_read as due_on,
    versions.amount_due_read as amount_due,
    versions.currency,
    versions.updated_at_read as updated_at,
    coalesce(versions.rejection_rule, case when versions.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(versions.rejection_reason, case
        when versions.is_conflicting
            then 'conflicting versions: same invoice_id and updated_at, different values'
    end) as rejection_reason,
    case
        when versions.rejection_rule is not null or versions.is_conflicting
            then
                {{ json_record(record_columns('invoices'), 'versions') }}
    end as rejected_record,
    versions._source_file as source_file,
    versions._source_line as source_line,
    versions.landing_partition,
    versions.landing_file,
    version_chain.invoice_id is not null as is_version,
    version_chain.previous_updated_at
from versions
left join version_chain
    on
        versions.invoice_id = version_chain.invoice_id
        and versions.updated_at_read = version_chain.updated_at
        and versions.rejection_rule is null
        and not versions.is_conflicting
        and versions._source_line = versions.last_valid_line
