-- The manual override in force for each customer this month (valid_from <= month <= valid_until,
-- valid_until inclusive and open-ended when empty); when several apply, the latest approved wins.
with overrides as (
    select * from {{ ref('stg_raw__tier_overrides') }}
),

in_force as (
    select
        *,
        row_number() over (partition by customer_id order by updated_at desc, override_id desc) as override_rank
    from overrides
    where valid_from_month <= {{ month_start() }}
        and (valid_until_month is null or valid_until_month >= {{ month_start() }})
)

select customer_id, override_id, override_tier, override_reason, override_approver,
       valid_from_month, valid_until_month
from in_force
where override_rank = 1
