-- One row per manual tier override as of the end of the month computed: its latest valid version.
with valid_versions as (
    select * from {{ ref('int_tier_overrides__checked') }}
    where rejection_rule is null
),

ranked as (
    select
        *,
        row_number() over (partition by override_id order by updated_at desc, source_line desc) as version_rank
    from valid_versions
)

select
    override_id,
    customer_id,
    override_tier,
    override_reason,
    override_approver,
    valid_from_month,
    valid_until_month,
    updated_at
from ranked
where version_rank = 1
