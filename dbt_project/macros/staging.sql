{#- The rows of a raw table that the current run's batch holds (raw.batch_rows lists them by
    row key; raw keeps every distinct row ever loaded, the batch says which ones this run saw). -#}
{% macro run_batch_rows(table) -%}
    select {{ table }}.*
    from {{ source('raw', table) }} as {{ table }}
    inner join (
        select row_key
        from {{ source('raw', 'batch_rows') }}
        where batch_id = {{ lit(var('batch_id')) }} and source_table = '{{ table }}'
    ) as batch
        on batch.row_key = {{ table }}._row_key
{%- endmacro %}
