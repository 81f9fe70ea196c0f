{#- Row rules: reading a landed text value, and naming the first rule a landed row breaks.

    The staging models (stg_landing__*) type every landed row once and mark it valid or rejected
    with these; docs/rules.md lists the rules. A value that cannot be read is NULL, never an
    error: the check beside it says why. PostgreSQL 15 has no try_cast nor pg_input_is_valid,
    so its readers call the functions tiering_try_* of macros/postgres_functions.sql (created by
    the on-run-start hook); Spark's cast of a bad value is NULL already (ANSI mode off), so its
    readers check the text's shape and cast. -#}

{#- The landed files of `table` not yet typed into the model being built: the run's partitions
    (the source landing.partitions, written by the landing step) minus the files it holds. None
    when nothing was landed yet (a compile on its own, e.g. the SQL linter). `chained`: the model
    links each version to the one before it (previous_updated_at), so the partitions after the
    earliest one typed now are typed again too (drop_superseded_versions drops them). -#}
{% macro landed_files_to_type(table, chained=false) -%}
    {%- set partitions = source('landing', 'partitions') -%}
    {%- if not execute or adapter.get_relation(partitions.database, partitions.schema, partitions.identifier) is none -%}
        {{ return("''") }}
    {%- endif -%}
    {%- set query -%}
        select landing_file from {{ source('landing', 'partitions') }} where table_name = '{{ table }}'
        {%- if is_incremental() %}
        and (
            landing_file not in (select distinct landing_file from {{ this }})
            {%- if chained %}
            or {{ after_earliest_untyped_partition(table) }}
            {%- endif %}
        )
        {%- endif %}
    {%- endset -%}
    {{- return(sql_text_list(run_query(query).columns[0].values())) -}}
{%- endmacro %}

{#- The landed rows of `table` the model being built types (landed_files_to_type), as a relation.
    With `version_key` (a versioned table: its id column), each row also says whether its id has
    other rows among them (is_repeated): version_chain compares only those rows with each other.
    DuckDB reads those files with read_parquet: the source view (one branch per file) fed every
    file of a first month into one plan, and typing them ran out of memory at 1M customers under a
    1GB limit (bench/RESULTS.md). The other targets read the source. -#}
{% macro landed_rows(table, version_key=none) -%}
    {%- set files = adapter.dispatch('landed_files', 'tiering')(table, version_key is not none) -%}
    {%- if version_key is none -%}
    {{ files }} as landed_rows
    {%- else -%}
    (
        select
            landed_files.*,
            repeated_ids.{{ version_key }} is not null as is_repeated
        from {{ files }} as landed_files
        left join (
            select {{ version_key }} from {{ files }} as landed_ids
            group by {{ version_key }}
            having count(*) > 1
        ) as repeated_ids on landed_files.{{ version_key }} = repeated_ids.{{ version_key }}
    ) as landed_rows
    {%- endif -%}
{%- endmacro %}
{% macro default__landed_files(table, chained) -%}
    (select * from {{ source('landing', table) }} where landing_file in ({{ landed_files_to_type(table, chained) }}))
{%- endmacro %}
{% macro duckdb__landed_files(table, chained) -%}
    {%- set files = landed_files_to_type(table, chained) -%}
    {%- if files == "''" -%}
    (select * from {{ source('landing', table) }} where false)
    {%- else -%}
    (select * exclude (filename), filename as landing_file from read_parquet([{{ files }}], filename = true))
    {%- endif -%}
{%- endmacro %}

{#- The version chain of a staging model's typed rows (CTE `checked`: the landed rows of
    landed_rows(table, version_key) with their first broken rule), as CTEs ending in `chained`:
    every row with
    - is_conflicting: valid rows of the same id and updated_at whose values differ (their landed
      row hashes `_hash`, of every landed text value, differ): no version can be told the latest;
    - is_version: a valid row, not conflicting, the last line of identical rows at its updated_at;
    - previous_updated_at, on a version: the updated_at of its id's version before it (typed now,
      else by an earlier run).
    A month's as-of keeps the versions in its reach that no later one there names
    (intermediate/as_of). Only the rows of an id landed more than once are compared with each
    other: most ids have one row, and windows over every row sort them all with every column. -#}
{% macro version_chain(key) -%}
-- (read by both branches below and, in an incremental run, by earlier_latest: each reads the
-- landed files again, with its own filter, instead of DuckDB writing every typed row out first)
typed as {{ not_materialized() }} (
    select * from checked
),

-- an id's only row typed now: a version if valid
single_rows as (
    select
        *,
        false as is_conflicting,
        case when rejection_rule is null then _source_line end as last_valid_line,
        rejection_rule is null as is_version,
        cast(null as {{ dbt.type_timestamp() }}) as previous_now
    from typed
    where not is_repeated
),

repeated_compared as (
    select
        *,
        min(case when rejection_rule is null then _hash end) over (partition by {{ key }}, updated_at_read)
        <> max(case when rejection_rule is null then _hash end) over (partition by {{ key }}, updated_at_read)
            as is_conflicting,
        max(case when rejection_rule is null then _source_line end) over (partition by {{ key }}, updated_at_read)
            as last_valid_line
    from typed
    where is_repeated
),

repeated_marked as (
    select
        *,
        rejection_rule is null and not is_conflicting and _source_line = last_valid_line as is_version
    from repeated_compared
),

-- (of the rows at one updated_at only the version counts: the others add null)
repeated_rows as (
    select
        *,
        max(case when is_version then updated_at_read end) over (
            partition by {{ key }} order by updated_at_read
            rows between unbounded preceding and 1 preceding
        ) as previous_now
    from repeated_marked
),

versions as (
    select * from single_rows
    union all
    select * from repeated_rows
),

-- the latest version of each id typed by an earlier run, all in earlier partitions (the pre-hook
-- drops the partitions after the earliest one typed now, which are then typed again)
earlier_latest as (
    {%- if is_incremental() %}
    select {{ key }}, max(updated_at) as updated_at
    from {{ this }}
    where is_version and {{ key }} in (select typed.{{ key }} from typed where typed.rejection_rule is null)
    group by {{ key }}
    {%- else %}
    select
        {{ key }},
        updated_at_read as updated_at
    from typed
    where 1 = 0
    {%- endif %}
),

-- each version with the updated_at of its id's version before it: typed now, else earlier
chained as (
    select
        versions.*,
        case
            when versions.is_version then coalesce(versions.previous_now, earlier_latest.updated_at)
        end as previous_updated_at
    from versions
    left join earlier_latest on versions.{{ key }} = earlier_latest.{{ key }}
)
{%- endmacro %}

{#- A month partition after the earliest partition of `table` the model being built has not typed
    yet (a version chained to an earlier one must be typed again when that one changes). -#}
{% macro after_earliest_untyped_partition(table) -%}
    (landing_partition <> 'unparseable' and landing_partition > (
        select min(landing_partition) from {{ source('landing', 'partitions') }}
        where
            table_name = '{{ table }}' and landing_partition <> 'unparseable'
            and landing_file not in (select distinct landing_file from {{ this }})
    ))
{%- endmacro %}

{#- Texts as a list of SQL literals for `in (...)`: "'a', 'b'"; "''" (no file is named so) when
    there are none. -#}
{% macro sql_text_list(values) -%}
    {%- set quoted = [] -%}
    {%- for value in values -%}
        {%- do quoted.append("'" ~ value | replace("'", "''") ~ "'") -%}
    {%- endfor -%}
    {{- return(quoted | join(', ') if quoted else "''") -}}
{%- endmacro %}

{#- Strings that parse as timestamps but name no real moment (infinity, epoch, ...), in any case,
    with surrounding spaces. DuckDB: one regular expression (its IN list of a dozen texts is
    planned as a join, several times slower on every landed row). -#}
{% macro is_special_timestamp(column) -%}
    {{ return(adapter.dispatch('is_special_timestamp', 'tiering')(column)) }}
{%- endmacro %}
{% macro default__is_special_timestamp(column) -%}
    regexp_full_match({{ column }}, '(?i) *({{ var('special_timestamps', ['infinity']) | join('|') | replace('+', '\\+') }}) *')
{%- endmacro %}
{% macro postgres__is_special_timestamp(column) -%}
    lower(trim({{ column }})) in ({{ "'" ~ var('special_timestamps', ['infinity']) | join("', '") ~ "'" }})
{%- endmacro %}
{% macro spark__is_special_timestamp(column) -%}{{ postgres__is_special_timestamp(column) }}{%- endmacro %}

{% macro is_missing(column) -%}coalesce(trim({{ column }}), '') = ''{%- endmacro %}

{#- The text timestamps the other targets read (a regular expression): YYYY-MM-DD (a year of four
    digits or more: a later one is impossible_timestamp, as on DuckDB), optionally a time (T or a
    space, HH:MM[:SS[.fraction]]) with an optional offset (Z, +HH, +HH:MM, +HHMM). DuckDB's
    try_cast reads these and a few more (zone names, 'YYYY/MM/DD', a negative year); PostgreSQL's
    and Spark's casts read more than DuckDB's (day-first dates, 'Jan 5 2024', '2024' alone), so
    they read only this shape. -#}
{% macro iso_timestamp_shape() -%}
\s*\d{4,}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:[0-5]?\d(?::[0-5]?\d(?:\.\d*)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?\s*
{%- endmacro %}

{#- A text timestamp (ISO 8601, any offset) as a UTC timestamp; NULL when unreadable or special. -#}
{% macro read_timestamp(column) -%}
    {{ return(adapter.dispatch('read_timestamp', 'tiering')(column)) }}
{%- endmacro %}
{% macro default__read_timestamp(column) -%}
    case when not {{ is_special_timestamp(column) }}
        then cast(try_cast({{ column }} as timestamptz) as timestamp) end
{%- endmacro %}
{% macro postgres__read_timestamp(column) -%}
    case when not {{ is_special_timestamp(column) }} then tiering_try_timestamp({{ column }}) end
{%- endmacro %}
{% macro spark__read_timestamp(column) -%}
    case when not {{ is_special_timestamp(column) }} and {{ regexp_full_match(column, iso_timestamp_shape()) }}
        then cast({{ column }} as timestamp) end
{%- endmacro %}

{#- YYYY-MM-DD as a date; NULL otherwise. -#}
{% macro read_date(column) -%}
    {{ return(adapter.dispatch('read_date', 'tiering')(column)) }}
{%- endmacro %}
{% macro default__read_date(column) -%}
    case when {{ regexp_full_match(column, '\\d{4}-\\d{2}-\\d{2}') }} then try_cast({{ column }} as date) end
{%- endmacro %}
{% macro postgres__read_date(column) -%}
    case when {{ regexp_full_match(column, '\\d{4}-\\d{2}-\\d{2}') }} then tiering_try_date({{ column }}) end
{%- endmacro %}
{% macro spark__read_date(column) -%}
    case when {{ regexp_full_match(column, '\\d{4}-\\d{2}-\\d{2}') }} then cast({{ column }} as date) end
{%- endmacro %}

{#- YYYY-MM as the month's first day; NULL otherwise. -#}
{% macro read_month(column) -%}
    {{ read_date("(" ~ column ~ " || '-01')") }}
{%- endmacro %}

{#- A decimal amount; NULL when it is no number. -#}
{% macro read_decimal(column, scale=4) -%}
    {{ return(adapter.dispatch('read_decimal', 'tiering')(column, scale)) }}
{%- endmacro %}
{% macro default__read_decimal(column, scale) -%}try_cast({{ column }} as decimal(18, {{ scale }})){%- endmacro %}
{% macro postgres__read_decimal(column, scale) -%}
    {#- (a number too large for decimal(18, scale) is NULL, as with try_cast: not an error; the cast
        outside the case keeps the column's scale, which a case drops) -#}
    cast(case when {{ regexp_full_match('trim(' ~ column ~ ')', '[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d+)?') }}
        then tiering_try_decimal({{ column }}, 18, {{ scale }}) end as decimal(18, {{ scale }}))
{%- endmacro %}
{% macro spark__read_decimal(column, scale) -%}
    case when {{ regexp_full_match('trim(' ~ column ~ ')', '[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d+)?') }}
        then cast(trim({{ column }}) as decimal(18, {{ scale }})) end
{%- endmacro %}

{#- The first check a row breaks, as two columns: rejection_rule (the rule's code) and
    rejection_reason (a message naming the column and the value), or <prefix>_rule and
    <prefix>_reason. `checks`: a list of (rule, condition, message SQL), in the order they are
    checked. -#}
{% macro first_broken_rule(checks, prefix='rejection') -%}
    case
    {%- for rule, condition, message in checks %}
        when {{ condition }} then '{{ rule }}'
    {%- endfor %}
    end as {{ prefix }}_rule,
    case
    {%- for rule, condition, message in checks %}
        when {{ condition }} then {{ message }}
    {%- endfor %}
    end as {{ prefix }}_reason
{%- endmacro %}

{#- The checks every table's columns get, by kind, in the order they are checked: required
    fields present; timestamps, dates, months and amounts readable and possible (no sentinel, not
    before 1900, no timestamp after 9999, not negative unless `signed`); values of enumerated
    columns known. Each `read` map names the typed column a text column is read into. -#}
{% macro column_checks(required=[], timestamps={}, dates={}, months={}, amounts={}, enums={}, signed=[]) -%}
    {%- set checks = [] -%}
    {%- for column in required -%}
        {%- do checks.append(('missing_value', is_missing(column), "'missing required field ''" ~ column ~ "'''")) -%}
    {%- endfor -%}
    {%- for column, typed in timestamps.items() -%}
        {%- do checks.append(('impossible_timestamp', is_special_timestamp(column),
                              "'special value ''' || " ~ column ~ " || ''' in ''" ~ column ~ "'' is no real moment (expected ISO 8601)'")) -%}
        {%- do checks.append(('bad_timestamp', "not " ~ is_missing(column) ~ " and " ~ typed ~ " is null",
                              "'unparseable timestamp in ''" ~ column ~ "'': ''' || " ~ column ~ " || ''' (expected ISO 8601)'")) -%}
    {%- endfor -%}
    {%- for column, typed in dates.items() -%}
        {%- do checks.append(('bad_date', "not " ~ is_missing(column) ~ " and " ~ typed ~ " is null",
                              "'unparseable date in ''" ~ column ~ "'': ''' || " ~ column ~ " || ''' (expected YYYY-MM-DD)'")) -%}
    {%- endfor -%}
    {%- for column, typed in months.items() -%}
        {%- do checks.append(('bad_date', "not " ~ is_missing(column) ~ " and " ~ typed ~ " is null",
                              "'unparseable month in ''" ~ column ~ "'': ''' || " ~ column ~ " || ''' (expected YYYY-MM)'")) -%}
    {%- endfor -%}
    {%- for column, typed in timestamps.items() | list + dates.items() | list -%}
        {%- do checks.append(('date_before_1900', typed ~ " < cast('1900-01-01' as date)",
                              "'" ~ column ~ " ' || " ~ column ~ " || ' is before 1900-01-01'")) -%}
    {%- endfor -%}
    {#- (a year of five digits reads as a timestamp; the landing cannot place it in a month) -#}
    {%- for column, typed in timestamps.items() -%}
        {%- do checks.append(('impossible_timestamp', typed ~ " >= cast('10000-01-01' as timestamp)",
                              "'" ~ column ~ " ' || " ~ column ~ " || ' is after 9999-12-31'")) -%}
    {%- endfor -%}
    {%- for column, typed in amounts.items() -%}
        {%- do checks.append(('bad_amount', "not " ~ is_missing(column) ~ " and " ~ typed ~ " is null",
                              "'amount ''" ~ column ~ "'' is not a number: ''' || " ~ column ~ " || ''''")) -%}
        {%- if column not in signed -%}
        {%- do checks.append(('negative_amount', typed ~ " < 0", "'negative amount in ''" ~ column ~ "'': ' || " ~ column)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for column, allowed in enums.items() -%}
        {%- do checks.append(('unknown_value', column ~ " not in ('" ~ allowed | join("', '") ~ "')",
                              "'unknown " ~ column ~ " ''' || " ~ column ~ " || ''' (expected " ~ allowed | join(' | ') ~ ")'")) -%}
    {%- endfor -%}
    {{- return(checks) -}}
{%- endmacro %}

{#- The landed partitions month M reads: its month and the ones before, and `unparseable` (rows
    that cannot be placed in a month, rejected in every month). -#}
{% macro in_month_reach(relation=none) -%}
    {%- set column = (relation ~ '.' if relation else '') ~ 'landing_partition' -%}
    ({{ column }} <= '{{ var("month")[:7] }}' or {{ column }} = 'unparseable')
{%- endmacro %}

{#- Pre-hook of a staging model: drop the rows of partition versions the run no longer reads (a
    restatement landed a newer version; an emptied partition's new version holds no row to replace
    them with). -#}
{% macro drop_superseded_versions(table, chained=false) -%}
    {{ return(adapter.dispatch('drop_superseded_versions', 'tiering')(table, chained)) }}
{%- endmacro %}
{% macro default__drop_superseded_versions(table, chained) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where
        landing_file not in (select landing_file from {{ source('landing', 'partitions') }})
        and landing_partition in (
            select landing_partition from {{ source('landing', 'partitions') }} where table_name = '{{ table }}'
        )
        {%- if chained %}
        or {{ after_earliest_untyped_partition(table) }}
        {%- endif %}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}
{#- Spark has no delete on parquet tables: the partitions (landing_partition) that hold a superseded
    version are dropped whole (the run's own version of each is then inserted again). -#}
{% macro spark__drop_superseded_versions(table, chained) -%}
    {%- set superseded = [] -%}
    {%- if execute and is_incremental() -%}
        {%- set query -%}
            select distinct landing_partition from {{ this }}
            where
                landing_file not in (select landing_file from {{ source('landing', 'partitions') }})
                and landing_partition in (
                    select landing_partition from {{ source('landing', 'partitions') }} where table_name = '{{ table }}'
                )
                {%- if chained %}
                or {{ after_earliest_untyped_partition(table) }}
                {%- endif %}
        {%- endset -%}
        {%- set superseded = run_query(query).columns[0].values() -%}
    {%- endif -%}
    {%- if superseded -%}
    alter table {{ this }} drop if exists
        {%- for partition in superseded %} partition (landing_partition = '{{ partition }}'){{ ',' if not loop.last }}{% endfor %}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}
