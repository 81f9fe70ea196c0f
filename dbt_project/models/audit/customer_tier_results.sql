{{ replace_by_key_config('run_id') }}
-- Every (customer, month, run) result ever produced, append-only: a rerun adds its own rows.
select
    *,
    current_timestamp as recorded_at
from {{ ref('int_customer_tier_months') }}
where run_id = {{ lit(var('run_id')) }}
