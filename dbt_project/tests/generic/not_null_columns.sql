{% test not_null_columns(model, columns) %}
{#- The listed columns of the model are never null. One query and one dbt node per model instead of
    a `not_null` test per column: every dbt node costs about 40 ms of dbt's own Python, and 160
    column tests were most of a month's dbt time on small data. A failing row names the first null
    column of the list (`dbt build --select <test name> --store-failures` keeps them in a table). -#}
with checked as (
    select
        case
        {%- for column in columns %}
            when {{ column }} is null then '{{ column }}'
        {%- endfor %}
        end as null_column
    from {{ model }}
)

select null_column
from checked
where null_column is not null
{% endtest %}
