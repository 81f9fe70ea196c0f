{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month',
          pre_hook="{{ delete_months_rebuilt(onward=true) }}") }}
-- depends_on: {{ ref('int_customer_tier_months') }}
-- The CRM hand-off: one row per action the tier policy calls for, per customer and month (kept for
-- every month computed; `tiering crm-export` writes a month of it for a CRM bulk import). The month's
-- actions are produced after the month closed and are due from the first day of the next month:
--   assign_account_manager  the kind of account manager of the final tier changed (or the customer
--                           is new) and the tier has one (policy account_manager <> 'none')
--   weekly_contact /        one action per month for the tier's contact cadence (policy
--   twice_monthly_contact / contact_cadence weekly, twice-monthly, monthly; any other cadence:
--   monthly_contact /       scheduled_contact), first contact due contact_days after the month's
--   scheduled_contact       last day; none for a tier with contact_days 0 (self-service)
--   review_due              the tier review falls due (int_customer_review_schedule; never for a
--                           tier whose review_cadence_months is null)
--   credit_hold             the credit grade puts the customer on credit hold
--   win_back                the customer lapsed this month (movement 'lapsed'), or, with
--                           value.dormant_tier on, became dormant (is_dormant, not in D the
--                           previous computed month): once, in that month. The reason says why it
--                           has no positive value (value.measure) in the window: no completed
--                           order; completed orders, but credit notes (or zero amounts) leave no
--                           positive net revenue; no positive gross margin; or, with
--                           value.group_accounts, its own value is positive but its group's is not
--   growth_outreach         growth candidate: value tier B or C with potential tier A
-- Identifies customers by customer_id (inside the warehouse) and customer_key (pseudonymous, the
-- only identifier exported); upsert_key is stable per customer and action across months and reruns.
-- A run rebuilds its month and every month computed after it (macros/months.sql, months_onward),
-- as int_customer_review_schedule does: their rows read the tier rows and review clock of their month.
{%- set contact_actions = {'weekly': 'weekly_contact', 'twice-monthly': 'twice_monthly_contact',
                           'monthly': 'monthly_contact'} %}
{%- set months = months_onward() %}
with tier_month as (
    select * from {{ ref('customer_tier_monthly') }}
    where month in ({{ months }})
),

policy as (
    select * from {{ ref('tier_policy') }}
),

potential as (
    select
        customer_id,
        month,
        potential_tier,
        growth_candidate,
        expected_revenue_12m
    from {{ ref('customer_potential_monthly') }}
    where month in ({{ months }})
),

reviews as (
    select * from {{ ref('int_customer_review_schedule') }}
    where month in ({{ months }})
),

customer_keys as (
    select * from {{ source('potential', 'customer_keys') }}
),

customers as (
    select
        tier_month.customer_id,
        tier_month.month,
        cast({{ dbt.dateadd('month', 1, 'tier_month.month') }} as date) as next_month_start,
        cast({{ dbt.dateadd('day', -1, dbt.dateadd('month', 1, 'tier_month.month')) }} as date) as month_last_day,
        tier_month.rule_version,
        tier_month.run_id,
        customer_keys.customer_key,
        tier_month.final_tier,
        tier_month.previous_final_tier,
        tier_month.value_tier,
        tier_month.movement,
        tier_month.is_dormant,
        tier_month.order_count,
        -- the measure ranked (months computed before it was recorded ranked net revenue), and the
        -- customer's own value in it (with value.group_accounts, its group's is ranked)
        replace(coalesce(tier_month.value_measure, 'net_revenue'), '_', ' ') as value_measure_name,
        case
            when tier_month.value_measure = 'gross_margin' then coalesce(tier_month.gross_margin, 0)
            else tier_month.net_revenue
        end as own_value,
        tier_month.credit_grade,
        tier_month.credit_hold,
        tier_month.account_manager,
        previous_policy.account_manager as previous_account_manager,
        tier_month.contact_cadence,
        tier_month.contact_days,
        potential.potential_tier,
        potential.growth_candidate,
        potential.expected_revenue_12m,
        reviews.tier_since,
        reviews.review_cadence_months,
        reviews.next_review_date,
        reviews.review_due
    from tier_month
    left join policy as previous_policy on previous_policy.tier = tier_month.previous_final_tier
    left join potential on potential.customer_id = tier_month.customer_id and potential.month = tier_month.month
    left join reviews on reviews.customer_id = tier_month.customer_id and reviews.month = tier_month.month
    left join customer_keys on customer_keys.customer_id = tier_month.customer_id
),

actions as (
    select
        *,
        'assign_account_manager' as action,
        next_month_start as due_date,
        'tier ' || final_tier || ' calls for a ' || account_manager || ' account manager'
        || coalesce(' (was tier ' || previous_final_tier || ', ' || previous_account_manager || ')', ' (new customer)')
            as reason
    from customers
    where account_manager <> 'none' and account_manager is distinct from previous_account_manager

    union all

    select
        *,
        case contact_cadence
            {%- for cadence, action in contact_actions.items() %}
            when {{ lit(cadence) }} then '{{ action }}'
            {%- endfor %}
            else 'scheduled_contact'
        end as action,
        cast({{ dbt.dateadd('day', 'cast(contact_days as integer)', 'month_last_day') }} as date) as due_date,
        'tier ' || final_tier || ' policy: ' || contact_cadence
        || ' contact (every ' || contact_days || ' days)' as reason
    from customers
    where contact_days > 0

    union all

    select
        *,
        'review_due' as action,
        next_review_date as due_date,
        'tier ' || final_tier || ' since ' || substr(cast(tier_since as {{ text_type() }}), 1, 7) || ', reviewed every '
        || review_cadence_months || ' months' as reason
    from customers
    where review_due

    union all

    select
        *,
        'credit_hold' as action,
        next_month_start as due_date,
        'credit grade ' || credit_grade || ': hold new credit until the balance is settled' as reason
    from customers
    where credit_hold

    union all

    select
        *,
        'win_back' as action,
        next_month_start as due_date,
        case when movement = 'lapsed' then 'lapsed' else 'dormant' end || ': '
        || case
            when own_value > 0 then 'no positive ' || value_measure_name || ' of its account group in the value window'
            when order_count = 0 then 'no completed order in the value window'
            when value_measure_name = 'net revenue'
                then 'completed orders in the value window, but no positive net revenue after credit notes'
            else 'completed orders in the value window, but no positive ' || value_measure_name
        end
        || coalesce(' (was tier ' || previous_final_tier || ')', '') as reason
    from customers
    where movement = 'lapsed' or (is_dormant and previous_final_tier <> 'D')

    union all

    select
        *,
        'growth_outreach' as action,
        next_month_start as due_date,
        'value tier ' || value_tier || ' with potential tier ' || potential_tier || ' (expected revenue '
        || cast(round(expected_revenue_12m) as bigint) || ' over the potential horizon)' as reason
    from customers
    where growth_candidate
)

select
    month,
    customer_id,
    customer_key,
    'crm_' || left({{ sha256_hex("customer_key || '|' || action") }}, 24) as upsert_key,
    action,
    final_tier,
    value_tier,
    potential_tier,
    due_date,
    reason,
    rule_version,
    run_id
from actions
