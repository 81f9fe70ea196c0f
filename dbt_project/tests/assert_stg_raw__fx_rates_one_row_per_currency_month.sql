-- stg_raw__fx_rates has one rate per (currency, month): a second rate would double converted amounts.
-- Returns the offending (currency, month) pairs.
select
    currency,
    rate_month,
    count(*) as rates
from {{ ref('stg_raw__fx_rates') }}
group by currency, rate_month
having count(*) > 1
