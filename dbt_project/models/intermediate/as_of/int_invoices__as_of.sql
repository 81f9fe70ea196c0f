-- One row per invoice as of the end of the month computed: its latest valid version.
with valid_versions as (
    select * from {{ ref('int_invoices__checked') }}
    where rejection_rule is null
),

ranked as (
    select
        *,
        row_number() over (partition by invoice_id order by updated_at desc, source_line desc) as version_rank
    from valid_versions
)

select
    invoice_id,
    order_id,
    customer_id,
    issued_on,
    due_on,
    amount_due,
    currency,
    updated_at
from ranked
where version_rank = 1
