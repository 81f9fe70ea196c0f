{% test one_row_per_key_not_null(model, key, columns) %}
{#- One row per `key`, and the listed columns never null, checked by one aggregate over the model
    instead of a `unique` and a `not_null_columns` test that each read it: for a view each test
    computes it again. A failing row is a key with more than one row, or with a null in the listed
    columns (`key` itself included). -#}
{%- set has_null -%}
    {%- for column in [key] + columns %}{{ column }} is null{% if not loop.last %} or {% endif %}{% endfor -%}
{%- endset %}
select
    {{ key }},
    count(*) as rows_per_key,
    count(case when {{ has_null }} then 1 end) as rows_with_a_null
from {{ model }}
group by {{ key }}
having count(*) > 1 or count(case when {{ has_null }} then 1 end) > 0
{% endtest %}
