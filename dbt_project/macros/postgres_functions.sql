{#- The readers the row rules need on PostgreSQL (macros/row_rules.sql, postgres__read_*).
    PostgreSQL 15 has neither try_cast nor pg_input_is_valid: a cast of a bad value is an error,
    not a NULL. These plpgsql functions read a text and return NULL instead of failing. The
    timestamp reader first checks the text's shape (iso_timestamp_shape, macros/row_rules.sql), so
    that PostgreSQL's lenient input (day-first dates, 'Jan 5 2024') reads no more than DuckDB's
    try_cast does; the callers of the date and decimal readers check the shape. Created (or
    replaced) by the project's on-run-start hook on PostgreSQL only; elsewhere the hook does nothing.

    tiering_try_timestamp(text) -> timestamp in UTC (a text without an offset is read as UTC,
        whatever the session's time zone).
    tiering_try_date(text) -> date
    tiering_try_decimal(text, precision, scale) -> numeric rounded to `scale` (half away from
        zero, as DuckDB's cast), NULL when it does not fit decimal(precision, scale). -#}
{% macro create_row_rule_functions() -%}
    {{ return(adapter.dispatch('create_row_rule_functions', 'tiering')()) }}
{%- endmacro %}

{% macro default__create_row_rule_functions() -%}select 1{%- endmacro %}

{% macro postgres__create_row_rule_functions() -%}
create or replace function tiering_try_timestamp(value text) returns timestamp
language plpgsql immutable parallel safe as $function$
begin
    if value !~ '^(?:{{ iso_timestamp_shape() }})$' then
        return null;
    end if;
    -- with an offset (only after a time): that moment in UTC; without: the text is read as UTC
    if value ~ '\d:[0-5]?\d(?::[0-5]?\d(?:\.\d*)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)\s*$' then
        return cast(value as timestamptz) at time zone 'UTC';
    end if;
    return cast(value as timestamp);
exception when data_exception then
    return null;
end
$function$;

create or replace function tiering_try_date(value text) returns date
language plpgsql immutable parallel safe as $function$
begin
    return cast(value as date);
exception when data_exception then
    return null;
end
$function$;

create or replace function tiering_try_decimal(value text, numeric_precision integer, numeric_scale integer)
returns numeric
language plpgsql immutable parallel safe as $function$
declare
    result numeric;
begin
    result := round(cast(trim(value) as numeric), numeric_scale);
    if abs(result) >= power(10::numeric, numeric_precision - numeric_scale) then
        return null;
    end if;
    return result;
exception when data_exception then
    return null;
end
$function$
{%- endmacro %}
