-- Value tier under the rule set chosen in the rules file, and the key-account flag.
-- value.dormant_tier (optional, default false): a customer without positive value in the window
-- but with a positive-value purchase before or in it (as of the month end) is dormant, tier D
-- under the pareto and count rule sets too (under spend it is D anyway).
{%- set rule_set = rule('value.rule_set') %}
{%- set dormant_tier = rule_or('value.dormant_tier', false) %}
{%- set window_months = rule('value.window_months') %}
with ranked as (
    select * from {{ ref('int_customer_value_ranked') }}
),

tiered as (
    select
        *,
        {{ double_to_decimal('cast(ranking_value * 12 as ' ~ double_type() ~ ') / ' ~ window_months, 18, 4) }}
            as annual_spend,
        case
            {%- if dormant_tier and rule_set != 'spend' %}
            when not is_active and has_earlier_purchase then 'D'
            {%- endif %}
            {%- if rule_set == 'pareto' %}
            when not is_active then 'C'
            -- exact decimal comparison: prior_share < a_share  <=>  prior_value < a_share * total_value
            when prior_value < {{ rule('value.pareto.a_share') }} * total_value then 'A'
            when prior_value < {{ rule('value.pareto.b_share') }} * total_value then 'B'
            else 'C'
            {%- elif rule_set == 'count' %}
            when not is_active then 'C'
            when value_rank <= ceil({{ rule('value.count.a_share') }} * ranked_customers) then 'A'
            when value_rank <= ceil(({{ rule('value.count.a_share') }} + {{ rule('value.count.b_share') }}) * ranked_customers) then 'B'
            else 'C'
            {%- else %}
            when ranking_value * 12 / {{ window_months }} >= {{ rule('value.spend.a_min') }} then 'A'
            when ranking_value * 12 / {{ window_months }} >= {{ rule('value.spend.b_min') }} then 'B'
            when ranking_value * 12 / {{ window_months }} >= {{ rule('value.spend.c_min') }} then 'C'
            else 'D'
            {%- endif %}
        end as value_tier,
        coalesce(value_rank <= ceil({{ rule('value.key_account_share') }} * ranked_customers), false) as is_key_account,
        {{ 'not is_active and coalesce(has_earlier_purchase, false)' if dormant_tier else 'false' }} as is_dormant
    from ranked
)

select
    *,
    {{ lit(rule_set) }} as rule_set,
    {%- if rule_set == 'pareto' %}
    'A if prior_share < {{ rule("value.pareto.a_share") }}; '
    || 'B if prior_share < {{ rule("value.pareto.b_share") }}; else C'
    {%- elif rule_set == 'count' %}
    'A if rank <= ceil({{ rule("value.count.a_share") }} x ' || ranked_customers || '); '
    || 'B if rank <= ceil({{ rule("value.count.a_share") + rule("value.count.b_share") }} x ' || ranked_customers
    || '); else C'
    {%- else %}
    'annual spend: A >= {{ rule("value.spend.a_min") }}; B >= {{ rule("value.spend.b_min") }}; '
    || 'C >= {{ rule("value.spend.c_min") }}; else D'
    {%- endif %}
    {%- if dormant_tier and rule_set != 'spend' %}
    || '; no positive value: D if an earlier purchase (dormant), else C'
    {%- endif %}
    {%- if rule_or('value.measure', 'net_revenue') != 'net_revenue' %}
    || ' (value: {{ rule_or("value.measure", "net_revenue") }})'
    {%- endif %}
        as tier_rule
from tiered
