-- One row per payment as of the end of the month computed: its latest valid version.
with valid_versions as (
    select * from {{ ref('int_payments__checked') }}
    where rejection_rule is null
),

ranked as (
    select
        *,
        row_number() over (partition by payment_id order by updated_at desc, source_line desc) as version_rank
    from valid_versions
)

select
    payment_id,
    invoice_id,
    paid_at,
    amount,
    updated_at
from ranked
where version_rank = 1
