-- Key accounts are exactly the customers ranked within the top value.key_account_share of ranked
-- units, rounded up (ceil(0.05 x n)), whatever the rule set. Checked on the rows made under the
-- current rules. Returns the offending rows.
with months as (
    select
        month,
        count(distinct value_rank) as ranked_units
    from {{ ref('customer_tier_monthly') }}
    where
        rule_version = {{ lit(var('rule_version')) }}
        and month in ({{ months_rebuilt() }})
    group by month
)

select
    tiers.customer_id,
    tiers.month,
    tiers.value_rank,
    months.ranked_units,
    tiers.is_key_account
from {{ ref('customer_tier_monthly') }} as tiers
inner join months on months.month = tiers.month
where
    tiers.rule_version = {{ lit(var('rule_version')) }}
    and tiers.month in ({{ months_rebuilt() }})
    and tiers.is_key_account
    <> coalesce(tiers.value_rank <= ceil({{ rule('value.key_account_share') }} * months.ranked_units), false)
