-- One row per (customer_id, month) in the months the run rebuilt (macros/months.sql). Returns the
-- customer-months held more than once.
select
    customer_id,
    month,
    count(*) as tier_rows
from {{ ref('customer_tier_monthly') }}
where month in ({{ months_rebuilt() }})
group by customer_id, month
having count(*) > 1
