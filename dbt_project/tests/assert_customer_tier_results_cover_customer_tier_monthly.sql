-- Every row BI reads can be traced: its run's audit record exists for the same customer and
-- month, with the same final tier, rule version and customer code. Returns the untraceable rows.
with tiers as (
    select * from {{ ref('customer_tier_monthly') }}
    where month in ({{ months_rebuilt() }})
),

results as (
    select * from {{ ref('customer_tier_results') }}
    where run_id in (select tiers.run_id from tiers)
)

select
    tiers.customer_id,
    tiers.month,
    tiers.run_id,
    tiers.final_tier,
    results.final_tier as audited_final_tier
from tiers
left join results
    on results.run_id = tiers.run_id and results.customer_id = tiers.customer_id
where
    results.run_id is null
    or results.month <> tiers.month
    or results.final_tier <> tiers.final_tier
    or results.rule_version <> tiers.rule_version
    or results.customer_code <> tiers.customer_code
