-- The audit trail: one row per (run_id, customer_id), and every run covers exactly one month.
-- Returns the offending runs.
select
    run_id,
    count(*) as result_rows,
    count(distinct customer_id) as customers,
    count(distinct month) as months
from {{ ref('customer_tier_results') }}
where run_id = {{ lit(var('run_id')) }}
group by run_id
having count(*) <> count(distinct customer_id) or count(distinct month) <> 1
