-- Credit score (points scorecard of the rules file), grade, DPD bucket, arrears flag and
-- suggested credit limit for every customer. No invoice due by the month end: unrated.
{%- set grades = rule('credit.grade_min_score') %}
{%- set limits = rule('credit.limit_months_of_revenue') %}
with customer_value as (
    select
        customer_id,
        net_revenue
    from {{ ref('int_customer_value_monthly') }}
),

measures as (
    select * from {{ ref('int_customer_credit_measures') }}
),

ratios as (
    select
        customer_value.customer_id,
        customer_value.net_revenue,
        measures.invoice_count,
        measures.due_invoice_count,
        measures.on_time_rate,
        measures.avg_days_late,
        measures.max_days_late,
        measures.overdue_balance,
        measures.oldest_overdue_days,
        measures.invoiced_in_window,
        coalesce(measures.due_invoice_count, 0) > 0 as is_rated,
        case
            when coalesce(measures.overdue_balance, 0) = 0 then 0
            when measures.invoiced_in_window = 0 then 999999
            else
                cast(measures.overdue_balance as {{ double_type() }})
                / cast(measures.invoiced_in_window as {{ double_type() }})
        end as overdue_ratio
    from customer_value
    left join measures on measures.customer_id = customer_value.customer_id
),

scored as (
    select
        *,
        case
            when is_rated then
                {{ band_points('on_time_rate', rule('credit.on_time_rate_points'), descending=true) }}
                + {{ band_points('max_days_late', rule('credit.max_days_late_points'), descending=false) }}
                + {{ band_points('overdue_ratio', rule('credit.overdue_ratio_points'), descending=false) }}
        end as credit_score
    from ratios
),

graded as (
    select
        *,
        case
            when not is_rated then 'unrated'
            {%- for grade in ['A', 'B', 'C'] %}
            when credit_score >= {{ grades[grade] }} then '{{ grade }}'
            {%- endfor %}
            else 'D'
        end as credit_grade
    from scored
)

select
    customer_id,
    {{ month_start() }} as month,
    coalesce(invoice_count, 0) as invoice_count,
    coalesce(due_invoice_count, 0) as due_invoice_count,
    on_time_rate,
    avg_days_late,
    max_days_late,
    coalesce(overdue_balance, 0) as overdue_balance,
    oldest_overdue_days,
    case
        when coalesce(oldest_overdue_days, 0) = 0 then 'current'
        when oldest_overdue_days <= 30 then '1-30'
        when oldest_overdue_days <= 60 then '31-60'
        when oldest_overdue_days <= 90 then '61-90'
        else '90+'
    end as dpd_bucket,
    overdue_ratio,
    credit_score,
    credit_grade,
    is_rated,
    coalesce(oldest_overdue_days >= {{ rule('credit.arrears_dpd') }}, false) as arrears_flag,
    {%- set monthly_revenue_times_months %}
    {#- (net revenue below zero, when credit notes exceed the window's sales: no credit, limit 0) #}
    cast(greatest(net_revenue, 0) as {{ double_type() }}) / {{ rule('value.window_months') }} * case credit_grade
    {%- for grade, months in limits.items() %}
        when '{{ grade }}' then {{ months }}
    {%- endfor %}
    end
    {%- endset %}
    {{ double_to_decimal(monthly_revenue_times_months, 18, 2) }} as suggested_credit_limit
from graded
