-- The valid monthly rates to the reporting currency, for the months up to the one computed.
select distinct
    currency,
    rate_month,
    rate_to_reporting
from {{ ref('stg_landing__fx_rates') }}
where {{ in_month_reach() }} and rejection_rule is null
