{{ months_kept_config() }}
-- depends_on: {{ ref('int_customer_tier_months') }} (the months computed: macros/months.sql)
-- Alerts for the customers who matter most: key accounts or final tier A, this month or last.
-- One row per alert: credit grade fell, entered arrears, or value fell by more than the share
-- set in the rules file (alerts.value_drop_share) against the previous month.
-- Kept per month: a run rebuilds its month and the next month computed (macros/months.sql).
with tier_months as (
    select * from {{ ref('customer_tier_monthly') }}
    {%- if is_incremental() %}
    where month in ({{ months_read() }})
    {%- endif %}
),

credit as (
    select
        customer_id,
        month,
        arrears_flag
    from {{ ref('customer_credit_monthly') }}
    {%- if is_incremental() %}
    where month in ({{ months_read() }})
    {%- endif %}
),

with_previous as (
    select
        tier_months.customer_id,
        tier_months.month,
        tier_months.final_tier,
        tier_months.is_key_account,
        tier_months.net_revenue,
        tier_months.credit_grade,
        credit.arrears_flag,
        lag(tier_months.final_tier) over customer_months as previous_final_tier,
        lag(tier_months.is_key_account) over customer_months as was_key_account,
        lag(tier_months.net_revenue) over customer_months as previous_net_revenue,
        lag(tier_months.credit_grade) over customer_months as previous_credit_grade,
        lag(credit.arrears_flag) over customer_months as previous_arrears_flag
    from tier_months
    left join credit on credit.customer_id = tier_months.customer_id and credit.month = tier_months.month
    window customer_months as (partition by tier_months.customer_id order by tier_months.month)
),

watched as (
    select *
    from with_previous
    where
        previous_final_tier is not null
        and (is_key_account or was_key_account or final_tier = 'A' or previous_final_tier = 'A')
),

alerts as (
    select
        *,
        'credit_grade_fell' as reason_code,
        'credit grade ' || previous_credit_grade || ' -> ' || credit_grade as detail
    from watched
    -- grades sort A < B < C < D; unrated on either side is no evidence of a fall
    where previous_credit_grade <> 'unrated' and credit_grade <> 'unrated' and credit_grade > previous_credit_grade

    union all

    select
        *,
        'entered_arrears' as reason_code,
        'an open invoice is now {{ rule("credit.arrears_dpd") }}+ days past due' as detail
    from watched
    where arrears_flag and not coalesce(previous_arrears_flag, false)

    union all

    select
        *,
        'value_fell' as reason_code,
        'net revenue '
        || cast(round(previous_net_revenue, 2) as {{ text_type() }})
        || ' -> '
        || cast(round(net_revenue, 2) as {{ text_type() }})
            as detail
    from watched
    where
        previous_net_revenue > 0
        and net_revenue < previous_net_revenue * (1 - {{ rule('alerts.value_drop_share') }})
)

select
    month,
    customer_id,
    reason_code,
    detail,
    final_tier,
    previous_final_tier,
    is_key_account,
    credit_grade,
    previous_credit_grade,
    arrears_flag,
    net_revenue,
    previous_net_revenue
from alerts
{%- if is_incremental() %}
where month in ({{ months_rebuilt() }})
{%- endif %}
