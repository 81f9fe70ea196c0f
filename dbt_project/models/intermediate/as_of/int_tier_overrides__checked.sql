-- Every landed tier override version the month computed reads, with the rule it breaks as of that
-- month: its own row rule (stg_landing__tier_overrides), else a customer unknown at the month's
-- end. Valid rows: rejection_rule null.
{{ config(materialized='view') }}

-- (the rows rejected by their own row rule and the valid ones: two CTEs each read once, not one
-- read twice, which DuckDB would first write out whole, every column of every version)
with row_rejected as (
    select * from {{ ref('stg_landing__tier_overrides') }}
    where {{ in_month_reach() }} and rejection_rule is not null
),

overrides as (
    select * from {{ ref('stg_landing__tier_overrides') }}
    where {{ in_month_reach() }} and rejection_rule is null
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
from row_rejected

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
