-- One row per order as of the end of the month computed: its latest version in the month's reach
-- (the version no later version there names as its previous one: stg_landing__orders), unless a
-- month rule rejects it (int_orders__checked; the order is then left out of the month, and that
-- version is quarantined). A table: several readers (gate (b), the
-- models after it) read it once written, instead of each filtering the change log again.

with versions as (
    select * from {{ ref('int_orders__checked') }}
    where is_version
),

superseded as (
    select
        order_id,
        previous_updated_at
    from {{ ref('stg_landing__orders') }}
    where is_version and previous_updated_at is not null and {{ in_month_reach() }}
)

select
    versions.order_id,
    versions.customer_id,
    versions.ordered_at,
    versions.order_status,
    versions.currency,
    versions.amount,
    versions.cost,
    versions.original_order_id,
    versions.updated_at
from versions
left join superseded
    on
        versions.order_id = superseded.order_id
        and versions.updated_at = superseded.previous_updated_at
where superseded.order_id is null and versions.rejection_rule is null
