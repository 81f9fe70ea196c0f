{#- Every dbt command that runs hooks (run, build, test, seed, snapshot) on DuckDB logs itself in
    audit.dbt_invocations, with the pipeline run it was given (var run_id: `parse-only` when run by
    hand, the latest successful run for `tiering dbt`). The publish step reads it: it may update
    the BI copy in place only when no dbt command but the publishing run's own wrote the marts
    since the copy was made (tiering.publish). A sequence orders the rows, not a clock. -#}
{% macro log_dbt_invocation() -%}
    {%- if execute and target.type == 'duckdb' -%}
        {%- do run_query("create schema if not exists audit") -%}
        {%- do run_query("create sequence if not exists audit.dbt_invocation_seq") -%}
        {%- do run_query("create table if not exists audit.dbt_invocations (seq bigint, invocation_id varchar, "
                         ~ "run_id varchar, command varchar, invoked_at timestamp)") -%}
        insert into audit.dbt_invocations
        values (nextval('audit.dbt_invocation_seq'), {{ lit(invocation_id) }}, {{ lit(var('run_id')) }},
                {{ lit(flags.WHICH) }}, current_timestamp)
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
