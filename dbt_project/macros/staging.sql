{#- Staging: the latest version of each id in the current run's batch.

    raw keeps every distinct row ever loaded; raw.batch_rows lists each run's own loaded rows by
    row key (unless they were all new to raw: then they are the raw rows the run added, found by
    _first_batch_id, and the lineage row says member_rows_added), and raw.batch_lineage the runs
    whose rows make up a run's batch of a table: the run itself and, for a table landed as a
    delta on an earlier run (tiering.increment), that run's batch.

    On DuckDB the versioned staging tables are kept incrementally: when the run's batch is a
    delta on the very batch the tables hold (the pipeline checks that and passes the var
    staging_increment: true; tiering.pipeline.transform_staging), a model reads only the rows
    the run loaded itself, and replaces (delete+insert on the id) just the ids they touch, by
    their latest version among those rows and the version the table holds. Otherwise the
    pipeline passes --full-refresh and the table is rebuilt from the whole batch; an ad-hoc
    build without either (e.g. `tiering dbt -- build`) rebuilds it too (pre-hook
    staging_full_rebuild). Other targets build plain tables. -#}

{#- Whether the target keeps staging in place (incremental models): DuckDB only. -#}
{% macro staging_kept_in_place() -%}
    {{ return(target.type == 'duckdb') }}
{%- endmacro %}

{% macro staging_config(key) -%}
    {%- if staging_kept_in_place() -%}
        {{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key=key,
                  pre_hook="{{ staging_full_rebuild() }}") }}
    {%- else -%}
        {{ config(materialized='table') }}
    {%- endif -%}
{%- endmacro %}

{#- True when this model replaces only the ids the run's own rows touch. -#}
{% macro staging_increment() -%}
    {{ return(is_incremental() and var('staging_increment', false)) }}
{%- endmacro %}

{#- Pre-hook: an incremental build that is not a delta on the held batch empties the table first
    (same transaction), so that no id of another batch survives. -#}
{% macro staging_full_rebuild() -%}
    {%- if is_incremental() and not var('staging_increment', false) -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The rows of a raw table in the current run's batch: all of them, or in an incremental build
    the rows the run loaded itself. When every one of those was new to raw (var own_rows_new,
    from audit.load_batches: loaded_rows = new_raw_rows), they are the rows it added: raw is
    appended to, so a filter on _first_batch_id skips the earlier row groups by their min/max
    statistics instead of looking every row key up in raw.batch_rows. `own_rows_only` overrides
    the choice (a test, which cannot tell an incremental build, passes it). -#}
{% macro run_batch_rows(table, own_rows_only=none) -%}
    {%- set own_rows_only = staging_increment() if own_rows_only is none else own_rows_only %}
    select {{ table }}.*
    from {{ source('raw', table) }} as {{ table }}
    {%- if own_rows_only and table in var('own_rows_new', []) %}
    where {{ table }}._first_batch_id = {{ lit(var('batch_id')) }}
    {%- else %}
    where {{ table }}._row_key in (
        select batch_rows.row_key
        from {{ source('raw', 'batch_rows') }} as batch_rows
    {%- if own_rows_only %}
        where batch_rows.batch_id = {{ lit(var('batch_id')) }} and batch_rows.source_table = '{{ table }}'
    {%- else %}
        inner join {{ source('raw', 'batch_lineage') }} as lineage
            on lineage.member_batch_id = batch_rows.batch_id
            and lineage.source_table = batch_rows.source_table
        where lineage.batch_id = {{ lit(var('batch_id')) }} and lineage.source_table = '{{ table }}'
    {%- endif %}
    )
    {#- the rows of a member batch whose rows were all new to raw are the raw rows it added: they
        are not listed in raw.batch_rows (tiering.load) -#}
    or {{ table }}._first_batch_id in (
        select lineage.member_batch_id
        from {{ source('raw', 'batch_lineage') }} as lineage
        where lineage.batch_id = {{ lit(var('batch_id')) }} and lineage.source_table = '{{ table }}'
            and lineage.member_rows_added
        {%- if own_rows_only %}
            and lineage.member_batch_id = lineage.batch_id
        {%- endif %}
    )
    {%- endif %}
{%- endmacro %}

{#- In an incremental build: `union all` the version the table holds of every id that the CTE
    `renamed` (the run's own rows) touches, as (columns..., row_key null). Versions held and
    loaded never share an updated_at (the landing lands such a table in full).
    The table holds the batch of the delta's base run, every row of it updated before the base's
    cutoff (var delta_since: the table's `since` in the landing manifest). An id with an own row
    updated from then on has its latest version among the own rows, so the held version is looked
    up only for the ids of own rows updated before it (the carried rows, once quarantined, now
    valid): half the rows to rank, and no look-up of every touched id (bench/RESULTS.md).
    `every_id`: look the held version of every touched id up, for a model that needs more of it
    than the latest version (stg_raw__customers keeps the first version's time). -#}
{% macro union_held_versions(key, columns, every_id=false) -%}
    {%- if staging_increment() %}
    {%- set since = none if every_id else var('delta_since', {}).get(this.identifier | replace('stg_raw__', '')) %}
    union all
    select {{ columns | join(', ') }}, cast(null as {{ text_type() }}) as row_key
    from {{ this }}
    where {{ key }} in (
        select {{ key }} from renamed
        {%- if since %}
        where coalesce(updated_at < {{ to_utc_timestamp(lit(since)) }}, true)
        {%- endif %}
    )
    {%- endif %}
{%- endmacro %}

{#- The CTEs and final select of a versioned staging model: the latest version of each id before
    the as-of cutoff, from the CTE `candidates` (columns..., row_key).
    A rebuild ranks the versions with a window (ties by row_key). It sorts every row, but a sort
    spills to disk under a low memory_limit where a hash join of the whole batch would not.
    An update in place handles a month's rows (a few % of the table), where the latest
    updated_at per id (an aggregate) joined back is cheaper than sorting them (bench/RESULTS.md).
    An id's rows at its latest updated_at
    carry the same values: the load quarantines conflicting versions (same id and updated_at,
    different values; tiering.load), and the versions a table holds and those a run loads never
    share an updated_at. So `distinct` keeps one of identical repeated rows and both ways pick
    the same version; tests/integration/test_incremental_landing.py compares them after every
    run. Should the rule ever break, an update in place would hold the id twice and the staging
    gate's unique check would stop the run. -#}
{% macro latest_versions(key, columns) -%}
in_effect as (
    select * from candidates
    where updated_at < {{ as_of_cutoff() }}
),
{%- if staging_increment() %}

latest as (
    select {{ key }}, max(updated_at) as latest_updated_at
    from in_effect
    group by {{ key }}
)

select distinct {% for column in columns %}in_effect.{{ column }}, {% endfor %}{{ staged_before() }}
from in_effect
inner join latest
    on latest.{{ key }} = in_effect.{{ key }}
    and latest.latest_updated_at = in_effect.updated_at
{%- else %}

versioned as (
    select
        *,
        row_number() over (partition by {{ key }} order by updated_at desc, row_key) as version_rank
    from in_effect
)

select {{ columns | join(', ') }}, {{ staged_before() }}
from versioned
where version_rank = 1
{%- endif %}
{%- endmacro %}

{#- The column `staged_before` of a versioned staging model: the first day of the month after the
    one the build that wrote the row was for. An update in place appends the rows of the ids it
    touches with its own month's value, so they are found by a constant filter, which skips the
    row groups of the rows held before by their min/max (the staging gate, and
    int_orders__in_reporting_currency), instead of looking the run's own rows up in the whole
    table (one month's orders at 1M customers: 2.7 s per look-up). -#}
{% macro staged_before() -%}
    {{ next_month_start() }} as staged_before
{%- endmacro %}


{#- Tests of a model kept in place: in a build that updated it in place, only the rows the build
    may have written need checking. Every other row is one the table held, and it passed the same
    tests in the build that wrote it (the pipeline records the batch staging holds only after a
    build passed, and updates in place only on that batch), and delete+insert replaced every id the
    build wrote. A test opts in with the placeholder `where: "__rows_updated_in_place__"`, which
    get_where_subquery replaces when the test runs (dbt renders a test's config when the project
    is parsed, with stand-in vars: tiering.dbt_runner), as dbt's documentation does for dates.
    Over the rows a month wrote these tests cost a fraction of a run over all rows at 1M
    customers (bench/RESULTS.md). -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') or '' -%}
    {%- if '__rows_updated_in_place__' in where -%}
        {%- set where = where | replace('__rows_updated_in_place__', rows_updated_in_place(relation)) -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- SQL condition: the rows of a model kept in place that the current build may have written (all
    rows when it was no update in place). -#}
{% macro rows_updated_in_place(relation) -%}
    {%- set in_place = staging_kept_in_place() and var('staging_increment', false) -%}
    {%- if relation.identifier == 'int_orders__in_reporting_currency' -%}
        {#- every order the build converted again is converted for this month (looking the run's own
            orders up instead cost about as much as checking every row) -#}
        {%- set written = 'converted_before = ' ~ next_month_start() -%}
    {%- elif relation.identifier == 'int_invoices__settlement' -%}
        {#- every invoice the build computed again is computed for this month -#}
        {%- set written = 'paid_before = ' ~ next_month_start() -%}
    {%- else -%}
        {{ exceptions.raise_compiler_error("__rows_updated_in_place__ is not defined for " ~ relation.identifier
                                           ~ " (macros/staging.sql: rows_updated_in_place)") }}
    {%- endif -%}
    {{- return(written if in_place else '1 = 1') -}}
{%- endmacro %}
