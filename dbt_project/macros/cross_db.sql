{#- Dialect differences, one macro each (adapter.dispatch): DuckDB is the default target and
    its rendering is unchanged; PostgreSQL and Spark get their own spelling. dbt's own
    cross-database macros (dbt.datediff, dbt.date_trunc, ...) are used directly where they
    give the same result on every target. docs/portability.md lists what differs and why. -#}

{#- 8-byte floating point. Not dbt.type_float(): that renders `float`, a 4-byte REAL in DuckDB. -#}
{% macro double_type() -%}{{ return(adapter.dispatch('double_type', 'tiering')()) }}{%- endmacro %}
{% macro default__double_type() -%}double precision{%- endmacro %}
{% macro duckdb__double_type() -%}double{%- endmacro %}
{% macro spark__double_type() -%}double{%- endmacro %}

{#- Unbounded text (casts). -#}
{% macro text_type() -%}{{ return(adapter.dispatch('text_type', 'tiering')()) }}{%- endmacro %}
{% macro default__text_type() -%}varchar{%- endmacro %}
{% macro spark__text_type() -%}string{%- endmacro %}

{#- `with x as {{ not_materialized() }} (...)`: a CTE read twice is read twice, not written out
    first. DuckDB writes such a CTE out whole, which costs more than reading a table twice; the
    other targets keep their own choice (Spark has no such keyword). -#}
{% macro not_materialized() -%}{{ return(adapter.dispatch('not_materialized', 'tiering')()) }}{%- endmacro %}
{% macro default__not_materialized() -%}{%- endmacro %}
{% macro duckdb__not_materialized() -%}not materialized{%- endmacro %}

{#- Source text timestamp (ISO 8601, with or without offset) to a UTC timestamp without time zone.
    DuckDB: the session time zone is UTC (profile setting), so the cast to timestamp is in UTC.
    PostgreSQL: explicit `at time zone 'UTC'`, whatever the server's time zone.
    Spark: the session time zone is UTC (profile server_side_parameters). -#}
{% macro utc_timestamp_from_text(column) -%}
    {{ return(adapter.dispatch('utc_timestamp_from_text', 'tiering')(column)) }}
{%- endmacro %}
{% macro default__utc_timestamp_from_text(column) -%}cast(cast({{ column }} as timestamptz) as timestamp){%- endmacro %}
{% macro postgres__utc_timestamp_from_text(column) -%}(cast({{ column }} as timestamptz) at time zone 'UTC'){%- endmacro %}
{% macro spark__utc_timestamp_from_text(column) -%}cast({{ column }} as timestamp){%- endmacro %}

{#- True when the whole text matches the regular expression. -#}
{% macro regexp_full_match(column, pattern) -%}
    {{ return(adapter.dispatch('regexp_full_match', 'tiering')(column, pattern)) }}
{%- endmacro %}
{% macro default__regexp_full_match(column, pattern) -%}regexp_full_match({{ column }}, '{{ pattern }}'){%- endmacro %}
{% macro postgres__regexp_full_match(column, pattern) -%}({{ column }} ~ '^(?:{{ pattern }})$'){%- endmacro %}
{% macro spark__regexp_full_match(column, pattern) -%}({{ column }} rlike {{ spark_string('^(?:' ~ pattern ~ ')$') }}){%- endmacro %}

{#- A Spark SQL string literal of a text holding backslashes (regular expressions): Spark reads
    backslash escapes in string literals, so '\d' would reach the regex as 'd'. -#}
{% macro spark_string(text) -%}'{{ text | replace('\\', '\\\\') | replace("'", "\\'") }}'{%- endmacro %}

{#- The distinct values of a text column as one comma-separated text (aggregate; diagnostics only,
    order unspecified). dbt.listagg has no DISTINCT. -#}
{% macro distinct_list(column) -%}
    {{ return(adapter.dispatch('distinct_list', 'tiering')(column)) }}
{%- endmacro %}
{% macro default__distinct_list(column) -%}string_agg(distinct {{ column }}, ', '){%- endmacro %}
{% macro spark__distinct_list(column) -%}array_join(collect_set({{ column }}), ', '){%- endmacro %}

{#- Config of the models kept per month, per run or per landed partition (staging): delete+insert of
    the key where the adapter has it (DuckDB, PostgreSQL); on Spark (plain parquet tables, no delete)
    insert_overwrite of the partition named by the key, which is the same replacement of that month
    (run, partition). -#}
{% macro replace_by_key_config(key) -%}
    {%- if target.type == 'spark' -%}
        {{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by=[key],
                  file_format='parquet') }}
    {%- else -%}
        {#- (a column added to the model is added to the table, as for the marts kept per month) -#}
        {{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key=key,
                  on_schema_change='append_new_columns') }}
    {%- endif -%}
{%- endmacro %}

{#- A double rounded to decimal(precision, scale) the way DuckDB casts it: the nearest decimal of the
    double's exact value, halves away from zero. PostgreSQL's float8 -> numeric cast first rounds the
    double to 15 significant digits (93.15499999999999 becomes 93.155, then 93.16) and Spark's to the
    shortest text of the double (19.954999999999998 becomes 19.955, then 19.96), so both round
    explicitly (the rounded double's text is then exact at that scale). -#}
{% macro double_to_decimal(expression, precision, scale) -%}
    {{ return(adapter.dispatch('double_to_decimal', 'tiering')(expression, precision, scale)) }}
{%- endmacro %}
{% macro default__double_to_decimal(expression, precision, scale) -%}
    cast(sign({{ expression }}) * floor(abs({{ expression }}) * {{ 10 ** scale }} + 0.5) / {{ 10 ** scale }}
         as decimal({{ precision }}, {{ scale }}))
{%- endmacro %}
{% macro duckdb__double_to_decimal(expression, precision, scale) -%}
    cast({{ expression }} as decimal({{ precision }}, {{ scale }}))
{%- endmacro %}

{#- sha256 of a text, as lowercase hex #}
{% macro sha256_hex(expression) -%}
    {{ return(adapter.dispatch('sha256_hex', 'tiering')(expression)) }}
{%- endmacro %}
{% macro default__sha256_hex(expression) -%}sha256({{ expression }}){%- endmacro %}
{% macro postgres__sha256_hex(expression) -%}encode(sha256(convert_to({{ expression }}, 'UTF8')), 'hex'){%- endmacro %}
{% macro spark__sha256_hex(expression) -%}sha2({{ expression }}, 256){%- endmacro %}

{#- A JSON object of text columns {"column": value, ...} (quarantine records). -#}
{% macro json_record(columns, relation) -%}
    {{ return(adapter.dispatch('json_record', 'tiering')(columns, relation)) }}
{%- endmacro %}
{% macro default__json_record(columns, relation) -%}
    json_object({% for column in columns %}'{{ column }}', {{ relation }}.{{ column }}{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}
{% macro postgres__json_record(columns, relation) -%}
    json_build_object({% for column in columns %}'{{ column }}', {{ relation }}.{{ column }}{{ ', ' if not loop.last }}{% endfor %})::text
{%- endmacro %}
{% macro spark__json_record(columns, relation) -%}
    to_json(named_struct({% for column in columns %}'{{ column }}', {{ relation }}.{{ column }}{{ ', ' if not loop.last }}{% endfor %}))
{%- endmacro %}

{#- True when a text column holds an e-mail address or a phone number (tiering.pii: one definition,
    its patterns passed as the var `pii`). -#}
{% macro contains_personal_data(column) -%}
    {{ return(adapter.dispatch('contains_personal_data', 'tiering')(column)) }}
{%- endmacro %}
{% macro default__contains_personal_data(column) -%}
    {%- set pii = var('pii', {'email': '@', 'phone': '\\+', 'min_digits': 9}) -%}
    (coalesce(regexp_matches({{ column }}, '{{ pii.email }}'), false)
     or coalesce(len(list_filter(regexp_extract_all({{ column }}, '{{ pii.phone }}'),
                                 lambda candidate: length(regexp_replace(candidate, '[^0-9]', '', 'g')) >= {{ pii.min_digits }})) > 0,
                 false))
{%- endmacro %}
{#- (PostgreSQL's regular expressions spell a word boundary \y: their \b is a backspace) -#}
{% macro postgres__contains_personal_data(column) -%}
    {%- set pii = var('pii', {'email': '@', 'phone': '\\+', 'min_digits': 9}) -%}
    (coalesce({{ column }} ~ '{{ pii.email }}', false)
     or exists (select 1 from regexp_matches({{ column }}, '{{ pii.phone | replace('\\b', '\\y') }}', 'g') as candidate(parts)
                where length(regexp_replace(candidate.parts[1], '[^0-9]', '', 'g')) >= {{ pii.min_digits }}))
{%- endmacro %}
{% macro spark__contains_personal_data(column) -%}
    {%- set pii = var('pii', {'email': '@', 'phone': '\\+', 'min_digits': 9}) -%}
    (coalesce({{ column }} rlike {{ spark_string(pii.email) }}, false)
     or coalesce(size(filter(regexp_extract_all({{ column }}, {{ spark_string(pii.phone) }}, 0),
                             candidate -> length(regexp_replace(candidate, '[^0-9]', '')) >= {{ pii.min_digits }})) > 0,
                 false))
{%- endmacro %}
