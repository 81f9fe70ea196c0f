-- One row per order as of the end of the month computed: its latest valid version.
with valid_versions as (
    select * from {{ ref('int_orders__checked') }}
    where rejection_rule is null
),

ranked as (
    select
        *,
        row_number() over (partition by order_id order by updated_at desc, source_line desc) as version_rank
    from valid_versions
)

select
    order_id,
    customer_id,
    ordered_at,
    order_status,
    currency,
    amount,
    cost,
    original_order_id,
    updated_at
from ranked
where version_rank = 1
