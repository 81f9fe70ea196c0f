-- int_fx_rates__as_of has one rate per (currency, month): a second rate would double converted amounts.
-- Returns the offending (currency, month) pairs.
select
    currency,
    rate_month,
    count(*) as rates
from {{ ref('int_fx_rates__as_of') }}
group by currency, rate_month
having count(*) > 1
