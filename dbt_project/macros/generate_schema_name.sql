{#- Use the custom schema name as it is (raw, staging, intermediate, marts, audit),
    not dbt's default "<target schema>_<custom>": the schema names are part of the contract. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
