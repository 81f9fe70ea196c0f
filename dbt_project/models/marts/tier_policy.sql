-- The service policy per tier, straight from the rules file (policy section).
{%- set policy = rule('policy') %}
{%- for tier, p in policy.items() %}
select
    '{{ tier }}' as tier,
    {{ lit(p['account_manager']) }} as account_manager,
    {{ lit(p['contact_cadence']) }} as contact_cadence,
    {{ p['contact_days'] }} as contact_days,
    {{ 'cast(null as integer)' if p['review_cadence_months'] is none else p['review_cadence_months'] }}
        as review_cadence_months,
    {{ p['complaint_priority'] }} as complaint_priority,
    {{ lit(p['description']) }} as description,
    {{ lit(var('rule_version')) }} as rule_version
{{ 'union all' if not loop.last }}
{%- endfor %}
