{#- Append-only on every target; never rebuilt, not even by --full-refresh: the numbers given are
    the registry's whole point (parquet on Spark, where appending needs no delete). -#}
{%- if target.type == 'spark' %}
{{ config(materialized='incremental', incremental_strategy='append', full_refresh=false, file_format='parquet') }}
{%- else %}
{{ config(materialized='incremental', incremental_strategy='append', full_refresh=false) }}
{%- endif %}
-- The customer code registry: each customer's sequence number, given once and kept for ever.
-- A run registers the customers known at its month end that the registry does not hold yet, after
-- the highest number given, by first appearance in the source (earliest updated_at), then id.
-- Nothing is ever updated or deleted: a customer that vanishes from the source keeps its number
-- (never given again), a late customer gets the next free one, whatever its timestamps, and a
-- month rerun or run out of order reads the numbers given before. (On one unchanged source the
-- customers known at a month end are those first seen by then, so every run adds the next ones
-- in that order: the numbers are the same whatever the order the months are run in.)
with known_customers as (
    select
        customer_id,
        first_seen_at
    from {{ ref('int_customers__as_of') }}
),

registered as (
    {%- if is_incremental() %}
    select customer_id, customer_sequence
    from {{ this }}
    {%- else %}
    select
        customer_id,
        cast(null as bigint) as customer_sequence
    from known_customers
    where 1 = 0
    {%- endif %}
),

last_given as (
    select coalesce(max(customer_sequence), 0) as last_sequence
    from registered
),

unregistered as (
    select
        known_customers.customer_id,
        known_customers.first_seen_at
    from known_customers
    left join registered on registered.customer_id = known_customers.customer_id
    where registered.customer_id is null
)

select
    unregistered.customer_id,
    cast(
        last_given.last_sequence
        + row_number() over (order by unregistered.first_seen_at, unregistered.customer_id) as bigint)
        as customer_sequence,
    unregistered.first_seen_at,
    {{ month_start() }} as registered_month,
    {{ lit(var('run_id')) }} as registered_run_id
from unregistered
cross join last_given
