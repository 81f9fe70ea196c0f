-- As-of answers from the history equal the monthly facts: every (customer, month) row of
-- customer_tier_monthly falls in exactly one interval of its customer, with the same final tier.
-- Returns the offending customer-months, of the months the run rebuilt (macros/months.sql; the
-- intervals themselves, all of them, by assert_customer_tier_history_intervals_do_not_overlap).
with monthly as (
    select
        customer_id,
        month,
        final_tier
    from {{ ref('customer_tier_monthly') }}
    where month in ({{ months_rebuilt() }})
),

matched as (
    select
        monthly.customer_id,
        monthly.month,
        monthly.final_tier,
        count(history.customer_id) as intervals,
        min(history.final_tier) as history_tier
    from monthly
    left join {{ ref('customer_tier_history') }} as history
        on
            history.customer_id = monthly.customer_id
            and history.valid_from <= monthly.month
            and (history.valid_to is null or monthly.month < history.valid_to)
    group by monthly.customer_id, monthly.month, monthly.final_tier
)

select *
from matched
where intervals <> 1 or history_tier <> final_tier
