{{ months_kept_config() }}
-- The BI table: one row per customer and month, with the movement against the customer's
-- previous computed month and the service policy of its final tier. No personal data.
-- Kept per month: a run rebuilds its month and the next month computed (macros/months.sql).
with tier_months as (
    select * from {{ ref('int_customer_tier_months') }}
    {%- if is_incremental() %}
    where month in ({{ months_read() }})
    {%- endif %}
),

policy as (
    select * from {{ ref('tier_policy') }}
),

with_previous as (
    select
        *,
        lag(final_tier) over customer_months as previous_final_tier,
        lag(is_active) over customer_months as was_active
    from tier_months
    window customer_months as (partition by customer_id order by month)
)

select
    with_previous.customer_id,
    with_previous.month,
    with_previous.net_revenue,
    with_previous.gross_margin,
    with_previous.value_measure,
    with_previous.ranking_value,
    with_previous.order_count,
    with_previous.avg_order_value,
    with_previous.recency_days,
    with_previous.tenure_months,
    with_previous.recency_score,
    with_previous.frequency_score,
    with_previous.monetary_score,
    with_previous.value_rank,
    with_previous.value_share,
    with_previous.prior_share,
    with_previous.cumulative_share,
    with_previous.value_tier,
    with_previous.is_key_account,
    with_previous.is_active,
    with_previous.is_dormant,
    with_previous.credit_grade,
    with_previous.final_tier,
    with_previous.credit_hold,
    with_previous.is_overridden,
    with_previous.override_reason,
    with_previous.override_approved_by_key,
    case
        when with_previous.previous_final_tier is null then 'new'
        when not with_previous.is_active and with_previous.was_active then 'lapsed'
        -- tiers sort A < B < C < D, so a smaller letter is a better tier
        when with_previous.final_tier < with_previous.previous_final_tier then 'upgraded'
        when with_previous.final_tier > with_previous.previous_final_tier then 'downgraded'
        else 'unchanged'
    end as movement,
    with_previous.previous_final_tier,
    with_previous.customer_code,
    with_previous.region,
    with_previous.customer_kind,
    policy.account_manager,
    policy.contact_cadence,
    policy.contact_days,
    policy.review_cadence_months,
    policy.complaint_priority,
    with_previous.rule_set,
    with_previous.is_provisional,
    with_previous.rule_version,
    with_previous.run_id
from with_previous
left join policy on policy.tier = with_previous.final_tier
{%- if is_incremental() %}
where with_previous.month in ({{ months_rebuilt() }})
{%- endif %}
