-- customer_credit_monthly has exactly the (customer_id, month) rows of customer_tier_monthly, once
-- each, with the same credit grade; and a credit score exactly when the customer is rated.
-- Returns the offending rows.
with credit as (
    select
        *,
        count(*) over (partition by customer_id, month) as rows_for_customer_month
    from {{ ref('customer_credit_monthly') }}
    where month in ({{ months_rebuilt() }})
),

tiers as (
    select
        customer_id,
        month,
        credit_grade
    from {{ ref('customer_tier_monthly') }}
    where month in ({{ months_rebuilt() }})
)

select
    coalesce(credit.customer_id, tiers.customer_id) as customer_id,
    coalesce(credit.month, tiers.month) as month,
    credit.credit_grade,
    tiers.credit_grade as tier_credit_grade,
    credit.credit_score,
    credit.rows_for_customer_month
from credit
full outer join tiers on tiers.customer_id = credit.customer_id and tiers.month = credit.month
where
    credit.customer_id is null
    or tiers.customer_id is null
    or credit.rows_for_customer_month > 1
    or credit.credit_grade <> tiers.credit_grade
    or (credit.credit_grade = 'unrated') <> (credit.credit_score is null)
