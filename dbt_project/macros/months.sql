{#- The marts kept per month (customer_tier_monthly, tier_alerts_monthly) compare each customer's
    month with its previous computed month (movement, alerts). A run that (re)computes month M
    therefore rebuilds M and the next month computed after it, N, whose comparison is now against
    M; every other month stays as it is. They read, besides M and N, only the month computed
    before M. This relies on a customer known at a month end being known at every later one
    (staging never removes an id), so that a customer's previous computed month is the month
    computed before. Without it, a month's run would rebuild every month (24 months at 1M
    customers: customer_tier_monthly 48 s instead of 3 s). The tests of those marts check the
    months the run rebuilt (months_rebuilt), as the run's rows are all there. -#}

{#- The month computed next after the run's month, as a scalar SQL subquery (NULL when none). -#}
{% macro next_computed_month() -%}
    (select min(month) from {{ ref('int_customer_tier_months') }} where month > {{ month_start() }})
{%- endmacro %}

{#- ... and the month computed before it. -#}
{% macro previous_computed_month() -%}
    (select max(month) from {{ ref('int_customer_tier_months') }} where month < {{ month_start() }})
{%- endmacro %}

{#- SQL list for `month in (...)`: the months a run rebuilds in the marts kept per month. -#}
{% macro months_rebuilt() -%}
    {{ month_start() }}, {{ next_computed_month() }}
{%- endmacro %}

{#- ... and the month before them, which their comparison reads. -#}
{% macro months_read() -%}
    {{ previous_computed_month() }}, {{ months_rebuilt() }}
{%- endmacro %}

{#- Config of those marts: incremental on the month, the rebuilt months emptied first (pre-hook, same
    transaction: a month may have no row any more, e.g. no alert); on Spark (no delete) a table. -#}
{% macro months_kept_config() -%}
    {%- if target.type == 'spark' -%}
        {{ config(materialized='table') }}
    {%- else -%}
        {{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month',
                  pre_hook="{{ delete_months_rebuilt() }}") }}
    {%- endif -%}
{%- endmacro %}

{% macro delete_months_rebuilt() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where month in ({{ months_rebuilt() }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
