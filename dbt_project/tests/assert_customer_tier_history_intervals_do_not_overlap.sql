{{ config(tags=['full_history']) }}
-- Tier history intervals of a customer follow each other without overlap or gap: valid_to is
-- after valid_from and equals the next interval's valid_from, only the last one is open
-- (valid_to NULL), one interval per (customer_id, valid_from), and consecutive intervals have
-- different tiers. Returns the offending intervals.
with intervals as (
    select
        *,
        lead(valid_from) over (partition by customer_id order by valid_from) as next_valid_from,
        lag(final_tier) over (partition by customer_id order by valid_from) as previous_interval_tier,
        count(*) over (partition by customer_id, valid_from) as intervals_starting_here
    from {{ ref('customer_tier_history') }}
)

select
    customer_id,
    final_tier,
    valid_from,
    valid_to,
    next_valid_from,
    previous_interval_tier
from intervals
where
    valid_to <= valid_from
    or valid_to is distinct from next_valid_from
    or intervals_starting_here > 1
    or final_tier = previous_interval_tier
