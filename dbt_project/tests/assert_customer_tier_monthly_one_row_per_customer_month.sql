{{ config(tags=['full_history']) }}
-- The contract key of the BI table: one row per (customer_id, month), over the whole history
-- (incremental delete+insert per month must never leave a month twice).
select customer_id, month, count(*) as rows_for_customer_month
from {{ ref('customer_tier_monthly') }}
group by customer_id, month
having count(*) > 1
