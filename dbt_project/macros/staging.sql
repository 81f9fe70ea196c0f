{#- The rows of a raw table that the current run's batch holds. raw keeps every distinct row ever
    loaded; raw.batch_rows lists each run's own loaded rows by row key, and raw.batch_lineage the
    runs whose rows make up a run's batch of a table: the run itself and, for a table landed as a
    delta on an earlier run (tiering.increment), that run's batch. -#}
{% macro run_batch_rows(table) -%}
    select {{ table }}.*
    from {{ source('raw', table) }} as {{ table }}
    where {{ table }}._row_key in (
        select batch_rows.row_key
        from {{ source('raw', 'batch_rows') }} as batch_rows
        inner join {{ source('raw', 'batch_lineage') }} as lineage
            on lineage.member_batch_id = batch_rows.batch_id
            and lineage.source_table = batch_rows.source_table
        where lineage.batch_id = {{ lit(var('batch_id')) }} and lineage.source_table = '{{ table }}'
    )
{%- endmacro %}
