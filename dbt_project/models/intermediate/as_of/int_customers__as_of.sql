-- One row per customer known at the end of the month computed: the latest valid version whose
-- updated_at is before the month's end, and when the customer was first seen (its earliest
-- valid version's updated_at).
with valid_versions as (
    select * from {{ ref('stg_landing__customers') }}
    where {{ in_month_reach() }} and rejection_rule is null
),

ranked as (
    select
        *,
        min(updated_at) over (partition by customer_id) as first_seen_at,
        row_number() over (partition by customer_id order by updated_at desc, source_line desc) as version_rank
    from valid_versions
)

select
    customer_id,
    region,
    industry,
    customer_kind,
    parent_customer_id,
    created_at,
    first_seen_at,
    updated_at
from ranked
where version_rank = 1
