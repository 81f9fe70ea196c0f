{#- Use the custom schema name as it is (raw, staging, intermediate, marts, audit),
    not dbt's default "<target schema>_<custom>": the schema names are part of the contract.
    The marts go to var `marts_schema` when given: a pipeline run builds them into `marts_pending`
    and swaps them into `marts` once every test and gate passed (tiering.marts_build). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}
    {%- elif custom_schema_name | trim == 'marts' -%}{{ var('marts_schema', 'marts') }}
    {%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
