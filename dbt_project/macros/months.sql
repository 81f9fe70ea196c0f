{#- The marts kept per month (customer_tier_monthly, tier_alerts_monthly, and the aggregates of
    customer_tier_monthly: tier_summary_monthly, tier_migration_monthly, pareto_curve_monthly)
    compare each customer's month with its previous computed month (movement, alerts). A run that (re)computes month M
    therefore rebuilds M and the next month computed after it, N, whose comparison is now against
    M; every other month stays as it is. They read, besides M and N, only the month computed
    before M. This relies on a customer known at a month end being known at every later one
    (staging never removes an id), so that a customer's previous computed month is the month
    computed before. Without it, a month's run would rebuild every month (24 months at 1M
    customers: customer_tier_monthly 48 s instead of 3 s). The tests of those marts check the
    months the run rebuilt (months_rebuilt), as the run's rows are all there.
    A month whose marts build failed is made whole by running that month again (what Airflow's
    retry or `tiering run` of the month does); until then its rows there may be missing or old. -#}

{#- The month computed next after the run's month and the one before it, as SQL date literals
    ('null' when there is none). Looked up when the node is compiled, so that `month in (...)`
    compares with constants, which DuckDB turns into a scan filter that skips the other months'
    row groups (customer_tier_monthly with 24 months of 1M customers: 4.2 s with scalar subqueries
    there, 3.7 s with constants). -#}
{% macro next_computed_month() -%}
    {{- computed_month_beside('min', '>') -}}
{%- endmacro %}

{% macro previous_computed_month() -%}
    {{- computed_month_beside('max', '<') -}}
{%- endmacro %}

{% macro computed_month_beside(aggregate, comparison) -%}
    {%- set query -%}
        select cast({{ aggregate }}(month) as {{ text_type() }})
        from {{ ref('int_customer_tier_months') }} where month {{ comparison }} {{ month_start() }}
    {%- endset -%}
    {#- (no table yet, e.g. `dbt docs generate` before the first run: none) -#}
    {%- if execute and load_relation(ref('int_customer_tier_months')) is not none -%}
        {%- set found = run_query(query).columns[0].values()[0] -%}
        {{- return("date '" ~ found ~ "'" if found else 'null') -}}
    {%- endif -%}
    {{- return('null') -}}
{%- endmacro %}

{#- SQL list for `month in (...)`: the months a run rebuilds in the marts kept per month. -#}
{% macro months_rebuilt() -%}
    {{ month_start() }}, {{ next_computed_month() }}
{%- endmacro %}

{#- ... and the month before them, which their comparison reads. -#}
{% macro months_read() -%}
    {{ previous_computed_month() }}, {{ months_rebuilt() }}
{%- endmacro %}

{#- Config of those marts: incremental, the rebuilt months emptied by a pre-hook (same transaction;
    a month may have no row any more, e.g. no alert, so a delete by the new rows' months would miss
    it) and the new rows appended; on Spark (no delete) a table. -#}
{% macro months_kept_config() -%}
    {%- if target.type == 'spark' -%}
        {{ config(materialized='table') }}
    {%- else -%}
        {#- a column added to the model (a contract extension) is added to a warehouse built before it;
            its older months hold null there -#}
        {{ config(materialized='incremental', incremental_strategy='append', on_schema_change='append_new_columns',
                  pre_hook="{{ delete_months_rebuilt() }}") }}
    {%- endif -%}
{%- endmacro %}

{#- (onward: the months of months_onward, for the models that rebuild every later month) -#}
{% macro delete_months_rebuilt(onward=false) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where month in ({{ months_onward() if onward else months_rebuilt() }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- SQL list: the run's month and every month computed after it (int_customer_tier_months). The
    start of a customer's tier interval (int_customer_review_schedule) and the CRM actions that
    read it depend on more than the month before: a month run out of order, before months computed
    already, can move the start of an interval that runs on through all of them. Those models
    rebuild these months; in order (the normal case) that is the run's month only. -#}
{% macro months_onward() -%}
    {#- (var months_after, a list of 'YYYY-MM-DD': given instead, as unit tests do) -#}
    {%- set later = var('months_after', none) -%}
    {%- if later is none and execute and load_relation(ref('int_customer_tier_months')) is not none -%}
        {%- set query -%}
            select distinct cast(month as {{ text_type() }}) as month
            from {{ ref('int_customer_tier_months') }} where month > {{ month_start() }} order by 1
        {%- endset -%}
        {%- set later = run_query(query).columns[0].values() -%}
    {%- endif -%}
    {{ month_start() }}{% for month in later or [] %}, date '{{ month }}'{% endfor %}
{%- endmacro %}
