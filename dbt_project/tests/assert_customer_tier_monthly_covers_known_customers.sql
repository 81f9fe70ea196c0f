-- Every customer known at the end of the run's month has exactly one tier row for that month,
-- and no other customer has one (contract: "one row per (customer_id, month) for every customer
-- known at the end of the month"). Returns the customers missing on either side.
with known as (
    select customer_id from {{ ref('int_customer_value_monthly') }}
),

tiered as (
    select customer_id
    from {{ ref('customer_tier_monthly') }}
    where month = {{ month_start() }}
)

select
    coalesce(known.customer_id, tiered.customer_id) as customer_id,
    case
        when tiered.customer_id is null then 'known customer without a tier row'
        else 'tier row for a customer not known this month'
    end as problem
from known
full outer join tiered on tiered.customer_id = known.customer_id
where known.customer_id is null or tiered.customer_id is null
