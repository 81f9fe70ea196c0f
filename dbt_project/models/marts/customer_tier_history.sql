-- Tier history as validity intervals, derived from the monthly facts (gaps and islands):
-- an interval runs while the final tier stays the same; valid_to is exclusive and NULL
-- while current. Deterministic: backfilling or rerunning any month rebuilds it exactly.
with tier_months as (
    select customer_id, month, final_tier
    from {{ ref('customer_tier_monthly') }}
),

starts as (
    select
        *,
        case when lag(final_tier) over customer_months = final_tier then 0 else 1 end as is_island_start
    from tier_months
    window customer_months as (partition by customer_id order by month)
),

islands as (
    select
        *,
        sum(is_island_start) over (
            partition by customer_id order by month rows between unbounded preceding and current row
        ) as island_number
    from starts
),

intervals as (
    select
        customer_id,
        final_tier,
        min(month) as valid_from
    from islands
    group by customer_id, final_tier, island_number
)

select
    customer_id,
    final_tier,
    valid_from,
    lead(valid_from) over (partition by customer_id order by valid_from) as valid_to,
    lead(valid_from) over (partition by customer_id order by valid_from) is null as is_current
from intervals
