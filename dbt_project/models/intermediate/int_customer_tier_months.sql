{{ replace_by_key_config('month') }}
-- Every month's result per customer, kept for ever: value tier adjusted by credit through the
-- matrix of the rules file, credit hold, customer code, and what made it (rule version, run).
-- A rerun of a month replaces that month (the audit schema keeps every run).
-- Optional hysteresis (value.downgrade_after_months = N > 1): rule_tier is the rule set's tier
-- this month; an active customer keeps as value_tier the best rule_tier of its last N computed
-- months (this one included), so a downgrade takes effect once the rule tier has been lower for
-- N consecutive months; upgrades, and customers without value, at once. The earlier months come
-- from this table itself (every month is kept), so run months in order when N > 1.
{%- set matrix = rule('matrix') %}
{%- set hold_months = rule('value.downgrade_after_months') %}
{%- set code = rule('customer_code') %}
{%- set seq_digits = code['sequence_digits'] %}
with rule_tiers as (
    select * from {{ ref('int_customer_value_tiers') }}
),

earlier_best as (
    -- the best rule tier of each customer in its previous N - 1 computed months
    {%- if hold_months > 1 and is_incremental() %}
    select customer_id, min(rule_tier) as best_earlier_rule_tier
    from {{ this }}
    where month < {{ month_start() }}
        and month >= {{ dbt.dateadd('month', 1 - hold_months, month_start()) }}
    group by customer_id
    {%- else %}
    select
        customer_id,
        cast(null as {{ text_type() }}) as best_earlier_rule_tier
    from rule_tiers
    where 1 = 0
    {%- endif %}
),

value_tiers as (
    select
        rule_tiers.*,
        rule_tiers.value_tier as rule_tier,
        case
            when rule_tiers.is_active and earlier_best.best_earlier_rule_tier < rule_tiers.value_tier
                then earlier_best.best_earlier_rule_tier
            else rule_tiers.value_tier
        end as held_value_tier
    from rule_tiers
    left join earlier_best on earlier_best.customer_id = rule_tiers.customer_id
),

credit as (
    select * from {{ ref('int_customer_credit_graded') }}
),

overrides as (
    select * from {{ ref('int_customer_overrides_active') }}
),

registry as (
    -- each customer's sequence number, given once (the customer code registry)
    select
        customer_id,
        customer_sequence
    from {{ ref('int_customer_code_registry') }}
),

matrix as (
    select
        value_tiers.*,
        credit.credit_grade,
        credit.credit_score,
        case value_tiers.held_value_tier
            {%- for tier, row in matrix.items() %}
            when '{{ tier }}'
                then case credit.credit_grade
                    {%- for grade, final_tier in row.items() %}
                    when '{{ grade }}' then '{{ final_tier }}'
                    {%- endfor %}
                end
            {%- endfor %}
        end as matrix_tier,
        credit.credit_grade in (
            {%- for g in rule('credit_hold_grades') %}'{{ g }}'{{ ', ' if not loop.last }}{% endfor %}
        ) as credit_hold,
        registry.customer_sequence
    from value_tiers
    inner join credit on credit.customer_id = value_tiers.customer_id
    -- (every customer known at the month end is registered by this build: a missing number would
    -- fail the not-null test rather than drop the row)
    left join registry on registry.customer_id = value_tiers.customer_id
),

final as (
    -- a manual override, while in force, replaces the matrix tier
    select
        matrix.*,
        coalesce(overrides.override_tier, matrix.matrix_tier) as final_tier,
        overrides.override_id is not null as is_overridden,
        overrides.override_id,
        overrides.override_reason,
        overrides.override_approved_by_key
    from matrix
    left join overrides on overrides.customer_id = matrix.customer_id
),

coded as (
    select
        *,
        case final_tier
            {%- for tier, tier_code in code['tier_codes'].items() %}
            when '{{ tier }}' then '{{ tier_code }}'
            {%- endfor %}
        end
        || coalesce(case region
            {%- for region, region_code in code['region_codes'].items() %}
            when {{ lit(region) }} then '{{ region_code }}'
            {%- endfor %}
        end, '{{ code["unknown_region_code"] }}')
        || case
            {%- for scale, minimum in code['scale_min_revenue'].items() | sort(reverse=true) %}
            when net_revenue >= {{ minimum }} then '{{ scale }}'
            {%- endfor %}
            else '{{ (code["scale_min_revenue"].keys() | sort | first) }}'
        end
        || lpad(cast(customer_sequence as {{ text_type() }}), {{ seq_digits }}, '0') as code_digits
    from final
)

select
    customer_id,
    month,
    region,
    industry,
    customer_kind,
    parent_customer_id,
    net_revenue,
    gross_margin,
    cost_known_share,
    value_measure,
    ranking_value,
    order_count,
    avg_order_value,
    first_order_date,
    last_order_date,
    recency_days,
    tenure_months,
    recency_score,
    frequency_score,
    monetary_score,
    value_rank,
    ranked_customers,
    value_share,
    prior_share,
    cumulative_share,
    annual_spend,
    rule_tier,
    held_value_tier as value_tier,
    held_value_tier <> rule_tier as is_tier_held,
    is_key_account,
    is_active,
    is_dormant,
    rule_set,
    tier_rule,
    credit_grade,
    credit_score,
    matrix_tier,
    final_tier,
    credit_hold,
    is_overridden,
    override_id,
    override_reason,
    override_approved_by_key,
    customer_sequence,
    substr(code_digits, 1, 2) || '-' || substr(code_digits, 3, 2) || '-' || substr(code_digits, 5, 1)
    || '-' || substr(code_digits, 6) || '-'
    || cast({{ luhn_check_digit('code_digits', 5 + seq_digits) }} as {{ text_type() }}) as customer_code,
    {{ is_provisional_flag() }} as is_provisional,
    {{ lit(var('rule_version')) }} as rule_version,
    {{ lit(var('run_id')) }} as run_id
from coded
