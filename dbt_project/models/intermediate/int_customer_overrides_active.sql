-- The manual override in force for each customer this month (valid_from <= month <= valid_until,
-- valid_until inclusive and open-ended when empty); when several apply, the latest approved wins.
-- The approver leaves as its pseudonymous key (potential.approver_keys, written by the pipeline:
-- tiering.pseudonym); PostgreSQL's pii.approvers maps it back for auditors.
with overrides as (
    select * from {{ ref('int_tier_overrides__as_of') }}
),

approver_keys as (
    select * from {{ source('potential', 'approver_keys') }}
),

in_force as (
    select
        *,
        row_number() over (partition by customer_id order by updated_at desc, override_id desc) as override_rank
    from overrides
    where
        valid_from_month <= {{ month_start() }}
        and (valid_until_month is null or valid_until_month >= {{ month_start() }})
)

select
    in_force.customer_id,
    in_force.override_id,
    in_force.override_tier,
    in_force.override_reason,
    approver_keys.approver_key as override_approved_by_key,
    in_force.valid_from_month,
    in_force.valid_until_month
from in_force
left join approver_keys on approver_keys.approver = in_force.override_approver
where in_force.override_rank = 1
