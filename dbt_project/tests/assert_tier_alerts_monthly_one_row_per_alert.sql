-- One alert per (month, customer_id, reason_code), and only for a customer-month that exists in
-- customer_tier_monthly. Returns the offending alerts (of the months the run rebuilt: macros/months.sql).
with alerts as (
    select
        month,
        customer_id,
        reason_code,
        count(*) as alert_rows
    from {{ ref('tier_alerts_monthly') }}
    where month in ({{ months_rebuilt() }})
    group by month, customer_id, reason_code
)

select alerts.*
from alerts
left join {{ ref('customer_tier_monthly') }} as tiers
    on tiers.customer_id = alerts.customer_id and tiers.month = alerts.month
where alerts.alert_rows > 1 or tiers.customer_id is null
