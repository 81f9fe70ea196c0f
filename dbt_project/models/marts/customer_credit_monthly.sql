{{ replace_by_key_config('month') }}
-- Credit measures and grade per customer and month (kept for every month computed).
select
    customer_id,
    month,
    invoice_count,
    due_invoice_count,
    on_time_rate,
    avg_days_late,
    max_days_late,
    overdue_balance,
    dpd_bucket,
    overdue_ratio,
    credit_score,
    credit_grade,
    arrears_flag,
    suggested_credit_limit,
    {{ is_provisional_flag() }} as is_provisional,
    {{ lit(var('rule_version')) }} as rule_version,
    {{ lit(var('run_id')) }} as run_id
from {{ ref('int_customer_credit_graded') }}
