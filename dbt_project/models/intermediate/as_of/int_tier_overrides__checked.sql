-- Every landed tier override version the month computed reads, with the rule it breaks as of that
-- month: its own row rule (stg_landing__tier_overrides), else a customer unknown at the month's
-- end. Valid rows: rejection_rule null.
{{ config(materialized='view') }}

with overrides as (
    select * from {{ ref('stg_landing__tier_overrides') }}
    where {{ in_month_reach() }}
),

customers as (
    select customer_id from {{ ref('int_customers__as_of') }}
),

{%- set checks = [
    ('unknown_customer', 'customers.customer_id is null',
     "'unknown customer ''' || overrides.customer_id || ''' as of the end of the month computed'"),
] %}

month_checked as (
    select
        overrides.*,
        {{ first_broken_rule(checks, 'month') }}
    from overrides
    left join customers on overrides.customer_id = customers.customer_id
    where overrides.rejection_rule is null
)

select
    override_id,
    customer_id,
    override_tier,
    override_reason,
    override_approver,
    valid_from_month,
    valid_until_month,
    updated_at,
    rejection_rule,
    rejection_reason,
    rejected_record,
    source_file,
    source_line,
    landing_partition,
    landing_file
from overrides
where rejection_rule is not null

union all

select
    override_id,
    customer_id,
    override_tier,
    override_reason,
    override_approver,
    valid_from_month,
    valid_until_month,
    updated_at,
    month_rule,
    month_reason,
    -- (no record: staging keeps the landed values of its own rejections only, for every month;
    -- quarantine.rejected_rows reads the month's few from the change log, int_month_rejections)
    cast(null as {{ text_type() }}),
    source_file,
    source_line,
    landing_partition,
    landing_file
from month_checked
