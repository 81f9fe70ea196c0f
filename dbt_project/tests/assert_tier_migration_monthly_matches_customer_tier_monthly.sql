-- The migration matrix has one row per (month, from_tier, to_tier), and per month its customer
-- counts and revenue add up to the month's customer rows, in the months the run rebuilt
-- (macros/months.sql). Returns the offending months.
with migration as (
    select
        month,
        count(*) as cells,
        count(distinct from_tier || '->' || to_tier) as distinct_moves,
        sum(customer_count) as customer_count,
        sum(net_revenue) as net_revenue
    from {{ ref('tier_migration_monthly') }}
    where month in ({{ months_rebuilt() }})
    group by month
),

customers as (
    select
        month,
        count(*) as customer_count,
        sum(net_revenue) as net_revenue
    from {{ ref('customer_tier_monthly') }}
    where month in ({{ months_rebuilt() }})
    group by month
)

select
    coalesce(migration.month, customers.month) as month,
    migration.cells,
    migration.distinct_moves,
    migration.customer_count,
    customers.customer_count as customer_rows,
    migration.net_revenue,
    customers.net_revenue as customer_net_revenue
from migration
full outer join customers on customers.month = migration.month
where
    migration.month is null
    or customers.month is null
    or migration.cells <> migration.distinct_moves
    or migration.customer_count <> customers.customer_count
    or migration.net_revenue <> customers.net_revenue
