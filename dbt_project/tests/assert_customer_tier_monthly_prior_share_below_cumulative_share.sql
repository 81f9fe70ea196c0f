-- Shares of ranked customers: 0 <= prior_share < cumulative_share <= 1, value_share > 0, rank 1
-- starts at prior_share 0 and the last rank reaches cumulative_share 1; customers without a rank
-- have value_share 0 and no prior/cumulative share. Returns the offending rows.
with ranked as (
    select
        *,
        max(value_rank) over (partition by month) as last_rank
    from {{ ref('customer_tier_monthly') }}
    where month in ({{ months_rebuilt() }})
)

select
    customer_id,
    month,
    value_rank,
    value_share,
    prior_share,
    cumulative_share
from ranked
where (value_rank is not null and not (
    prior_share >= 0
    and prior_share < cumulative_share
    and cumulative_share <= 1 + 1e-9
    and value_share > 0
    and abs(prior_share + value_share - cumulative_share) < 1e-9
    and (value_rank <> 1 or prior_share = 0)
    and (value_rank <> last_rank or abs(cumulative_share - 1) < 1e-9)
))
or (value_rank is null and (value_share <> 0 or prior_share is not null or cumulative_share is not null))
