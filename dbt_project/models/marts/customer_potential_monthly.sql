{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}
-- Customer potential per customer and month (kept for every month computed): the BG/NBD +
-- Gamma-Gamma predictions of the score_potential step, a potential tier by expected revenue under
-- the value rule set of the rules file (same thresholds as the value tier), and the growth
-- candidate flag (value tier B or C, potential tier A). One row per customer of
-- customer_tier_monthly; the model columns are NULL when the customer has no purchase history or
-- the month's fit was skipped or failed (fit_status says which).
{%- set rule_set = rule('value.rule_set') %}
with tier_month as (
    select
        customer_id,
        month,
        value_tier,
        final_tier
    from {{ ref('customer_tier_monthly') }}
    where month = {{ month_start() }}
),

predictions as (
    select *
    from {{ source('potential', 'customer_potential') }}
    where month = {{ month_start() }}
),

latest_fit as (
    select
        status,
        message
    from {{ source('potential', 'fit_log') }}
    where month = {{ month_start() }} and run_id = {{ lit(var('run_id')) }}
),

ranked as (
    select
        *,
        row_number() over (order by expected_revenue_12m desc, customer_id asc) as potential_rank,
        count(*) over () as ranked_customers,
        coalesce(sum(expected_revenue_12m) over (
            order by expected_revenue_12m desc, customer_id asc rows between unbounded preceding and 1 preceding
        ), 0) as prior_expected_revenue,
        sum(expected_revenue_12m) over () as total_expected_revenue
    from predictions
    where expected_revenue_12m > 0
),

tiered as (
    select
        customer_id,
        potential_rank,
        case
            {%- if rule_set == 'pareto' %}
            when prior_expected_revenue < {{ rule('value.pareto.a_share') }} * total_expected_revenue then 'A'
            when prior_expected_revenue < {{ rule('value.pareto.b_share') }} * total_expected_revenue then 'B'
            else 'C'
            {%- elif rule_set == 'count' %}
            when potential_rank <= ceil({{ rule('value.count.a_share') }} * ranked_customers) then 'A'
            when potential_rank <= ceil(({{ rule('value.count.a_share') }} + {{ rule('value.count.b_share') }}) * ranked_customers) then 'B'
            else 'C'
            {%- else %}
            -- spend: expected revenue annualised over the horizon
            when expected_revenue_12m * 12 / horizon_months >= {{ rule('value.spend.a_min') }} then 'A'
            when expected_revenue_12m * 12 / horizon_months >= {{ rule('value.spend.b_min') }} then 'B'
            when expected_revenue_12m * 12 / horizon_months >= {{ rule('value.spend.c_min') }} then 'C'
            else 'D'
            {%- endif %}
        end as potential_tier
    from ranked
),

lowest_tier as (
    -- predictions of zero expected revenue are ranked last: the rule set's lowest tier
    select {{ "'D'" if rule_set == 'spend' else "'C'" }} as tier
)

select
    tier_month.customer_id,
    tier_month.month,
    tier_month.value_tier,
    tier_month.final_tier,
    predictions.frequency,
    predictions.recency as recency_days,
    predictions.t as age_days,  -- the model's T (lower case: portable)
    predictions.monetary,
    predictions.p_alive,
    predictions.expected_purchases_12m,
    predictions.expected_revenue_12m,
    predictions.horizon_months,
    tiered.potential_rank,
    case
        when predictions.customer_id is not null
            then coalesce(tiered.potential_tier, lowest_tier.tier)
    end as potential_tier,
    case
        when predictions.customer_id is not null
            then tier_month.value_tier in ('B', 'C') and coalesce(tiered.potential_tier, lowest_tier.tier) = 'A'
    end as growth_candidate,
    predictions.model,
    case
        when latest_fit.status = 'ok' and predictions.customer_id is null then 'no_purchase_history'
        else coalesce(latest_fit.status, 'not_run')
    end as fit_status,
    {{ lit(var('rule_version')) }} as rule_version,
    {{ lit(var('run_id')) }} as run_id
from tier_month
cross join lowest_tier
left join latest_fit on true
left join predictions on predictions.customer_id = tier_month.customer_id
left join tiered on tiered.customer_id = tier_month.customer_id
