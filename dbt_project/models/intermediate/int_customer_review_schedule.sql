{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}
-- Next tier review per customer and month (kept for every month computed). Deterministic from the
-- facts: the review clock starts when the customer's current final tier started (the first month
-- of its current tier interval) and rolls forward by the tier's review_cadence_months (rules file
-- `policy`): the next review is the first such date after the month. It is due when that date is
-- the first day of the next month, i.e. the review falls in the month the run hands over to.
{%- set policy = rule('policy') %}
with tier_months as (
    select customer_id, month, final_tier
    from {{ ref('int_customer_tier_months') }}
    where month <= {{ month_start() }}
),

interval_starts as (
    select
        *,
        lag(final_tier) over (partition by customer_id order by month) is distinct from final_tier
            as starts_interval
    from tier_months
),

-- the start of the interval each customer's tier is in at the month
tier_starts as (
    select customer_id, max(month) as tier_since
    from interval_starts
    where starts_interval
    group by customer_id
),

-- the customers of the month (a constant filter: the other months' rows are skipped)
this_month as (
    select
        tier_months.customer_id,
        tier_months.final_tier,
        tier_starts.tier_since
    from {{ ref('int_customer_tier_months') }} as tier_months
    inner join tier_starts on tier_starts.customer_id = tier_months.customer_id
    where tier_months.month = {{ month_start() }}
),

with_cadence as (
    select
        customer_id,
        final_tier,
        tier_since,
        case final_tier
        {%- for tier, p in policy.items() %}
            when '{{ tier }}' then {{ p['review_cadence_months'] }}
        {%- endfor %}
        end as review_cadence_months,
        {{ dbt.datediff('tier_since', month_start(), 'month') }} as months_in_tier
    from this_month
),

scheduled as (
    select
        *,
        -- first multiple of the cadence strictly after the month (a cadence of 0 means no review)
        cast({{ dbt.dateadd('month',
            'cast((floor(months_in_tier / nullif(review_cadence_months, 0)) + 1) * review_cadence_months as integer)',
            'tier_since') }} as date) as next_review_date
    from with_cadence
)

select
    customer_id,
    {{ month_start() }} as month,
    final_tier,
    tier_since,
    months_in_tier,
    review_cadence_months,
    next_review_date,
    coalesce(next_review_date = {{ next_month_start() }}, false) as review_due
from scheduled
