-- Value tier under the rule set chosen in the rules file, and the key-account flag.
{%- set rule_set = rule('value.rule_set') %}
{%- set window_months = rule('value.window_months') %}
with ranked as (
    select * from {{ ref('int_customer_value_ranked') }}
),

tiered as (
    select
        *,
        {{ double_to_decimal('cast(ranking_value * 12 as ' ~ double_type() ~ ') / ' ~ window_months, 18, 4) }} as annual_spend,
        case
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
        coalesce(value_rank <= ceil({{ rule('value.key_account_share') }} * ranked_customers), false) as is_key_account
    from ranked
)

select
    *,
    {{ lit(rule_set) }} as rule_set,
    {%- if rule_set == 'pareto' %}
    'A if prior_share < {{ rule("value.pareto.a_share") }}; B if prior_share < {{ rule("value.pareto.b_share") }}; else C' as tier_rule
    {%- elif rule_set == 'count' %}
    'A if rank <= ceil({{ rule("value.count.a_share") }} x ' || ranked_customers || '); B if rank <= ceil({{ rule("value.count.a_share") + rule("value.count.b_share") }} x ' || ranked_customers || '); else C' as tier_rule
    {%- else %}
    'annual spend: A >= {{ rule("value.spend.a_min") }}; B >= {{ rule("value.spend.b_min") }}; C >= {{ rule("value.spend.c_min") }}; else D' as tier_rule
    {%- endif %}
from tiered
