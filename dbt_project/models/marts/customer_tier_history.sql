-- Tier history as validity intervals, derived from the monthly facts (gaps and islands):
-- an interval runs while the final tier stays the same; valid_to is exclusive and NULL
-- while current. Deterministic: backfilling or rerunning any month rebuilds it exactly.
-- Read from int_customer_tier_months (every month computed, the final tiers customer_tier_monthly
-- carries): a run builds the marts apart with only the months it rebuilds (tiering.marts_build).
with tier_months as (
    select
        customer_id,
        month,
        final_tier
    from {{ ref('int_customer_tier_months') }}
),

-- an interval starts where the final tier differs from the customer's previous computed month
-- (or there is none); it runs until the next start (two window passes over the months, not a
-- running sum and a group-by besides)
starts as (
    select
        customer_id,
        final_tier,
        month as valid_from,
        -- (in parentheses: sqlfluff's duckdb dialect parses `is distinct from` only there)
        (lag(final_tier) over customer_months is distinct from final_tier) as is_interval_start
    from tier_months
    window customer_months as (partition by customer_id order by month)
),

intervals as (
    select
        customer_id,
        final_tier,
        valid_from
    from starts
    where is_interval_start
)

select
    customer_id,
    final_tier,
    valid_from,
    lead(valid_from) over (partition by customer_id order by valid_from) as valid_to,
    lead(valid_from) over (partition by customer_id order by valid_from) is null as is_current
from intervals
