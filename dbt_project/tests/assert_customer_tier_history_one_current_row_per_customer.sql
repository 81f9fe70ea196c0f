{{ config(tags=['full_history']) }}
-- Exactly one current interval per customer, and is_current exactly when valid_to is NULL.
-- Returns the offending customers.
select
    customer_id,
    count(case when is_current then 1 end) as current_rows,
    count(case when is_current <> (valid_to is null) then 1 end) as inconsistent_rows
from {{ ref('customer_tier_history') }}
group by customer_id
having
    count(case when is_current then 1 end) <> 1
    or count(case when is_current <> (valid_to is null) then 1 end) > 0
