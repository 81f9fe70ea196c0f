{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month',
          pre_hook="{{ delete_months_rebuilt(onward=true) }}") }}
-- Next tier review per customer and month (kept for every month computed). Deterministic from the
-- facts: the review clock starts when the customer's current final tier started (the first month
-- of its current tier interval) and rolls forward by the tier's review_cadence_months (rules file
-- `policy`): the next review is the first such date after the month. It is due when that date is
-- the first day of the next month, i.e. the review falls in the month the run hands over to.
-- A tier whose review_cadence_months is null (or 0) has no fixed review: never due.
-- A run rebuilds its month and every month computed after it (macros/months.sql, months_onward):
-- a month run out of order can move the start of an interval that runs on through later months.
{%- set policy = rule('policy') %}
with tier_months as (
    select
        customer_id,
        month,
        final_tier
    from {{ ref('int_customer_tier_months') }}
),

interval_starts as (
    select
        *,
        -- (in parentheses: sqlfluff's duckdb dialect parses `is distinct from` only there)
        (lag(final_tier) over (partition by customer_id order by month) is distinct from final_tier)
            as starts_interval
    from tier_months
),

-- the start of the interval each customer's tier is in at each month (the latest start up to it)
tier_starts as (
    select
        customer_id,
        month,
        final_tier,
        max(case when starts_interval then month end) over (
            partition by customer_id order by month rows between unbounded preceding and current row
        ) as tier_since
    from interval_starts
),

-- the customers of the months rebuilt (a constant filter)
months_rebuilt as (
    select
        customer_id,
        month,
        final_tier,
        tier_since
    from tier_starts
    where month in ({{ months_onward() }})
),

with_cadence as (
    select
        customer_id,
        month,
        final_tier,
        tier_since,
        case final_tier
            {%- for tier, p in policy.items() %}
            {%- set cadence = p['review_cadence_months'] %}
            when '{{ tier }}' then {{ 'cast(null as integer)' if cadence is none else cadence }}
            {%- endfor %}
        end as review_cadence_months,
        -- (dbt.datediff renders on one line longer than the limit)
        {{ dbt.datediff('tier_since', 'month', 'month') }} as months_in_tier -- noqa: LT05
    from months_rebuilt
),

scheduled as (
    select
        *,
        -- first multiple of the cadence strictly after the month (a cadence of 0 means no review)
        cast({{ dbt.dateadd('month',
            'cast((floor(months_in_tier / nullif(review_cadence_months, 0)) + 1) * review_cadence_months as integer)',
            'tier_since') }} as date) as next_review_date,
        cast({{ dbt.dateadd('month', 1, 'month') }} as date) as next_month
    from with_cadence
)

select
    customer_id,
    month,
    final_tier,
    tier_since,
    months_in_tier,
    review_cadence_months,
    next_review_date,
    coalesce(next_review_date = next_month, false) as review_due
from scheduled
