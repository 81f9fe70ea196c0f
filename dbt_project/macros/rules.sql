{#- Read one value of the rules file (passed by the pipeline as the `rules` var), e.g.
    rule('value.pareto.a_share'). A missing key fails compilation with its path. -#}
{% macro rule(path) -%}
    {%- set ns = namespace(node=var('rules')) -%}
    {%- for part in path.split('.') -%}
        {%- if ns.node is not mapping or part not in ns.node -%}
            {{ exceptions.raise_compiler_error("rules file has no key '" ~ path ~ "' (run through `tiering`, which passes the rules)") }}
        {%- endif -%}
        {%- set ns.node = ns.node[part] -%}
    {%- endfor -%}
    {{- return(ns.node) -}}
{%- endmacro %}

{#- An optional key of the rules file: its value, or `default` when the file leaves it out
    (optional keys are not written into the rules, so they do not change a file's rule_version). -#}
{% macro rule_or(path, default) -%}
    {%- set ns = namespace(node=var('rules')) -%}
    {%- for part in path.split('.') -%}
        {%- if ns.node is not mapping or part not in ns.node -%}
            {{- return(default) -}}
        {%- endif -%}
        {%- set ns.node = ns.node[part] -%}
    {%- endfor -%}
    {{- return(ns.node) -}}
{%- endmacro %}

{#- The month being computed and its bounds, as SQL date literals. -#}
{% macro month_start() %}date '{{ var("month") }}'{% endmacro %}
{% macro next_month_start() %}date '{{ var("next_month") }}'{% endmacro %}
{% macro month_last_day() %}date '{{ var("month_last_day") }}'{% endmacro %}

{#- A text literal. -#}
{#- The run's provisional flag (var is_provisional: the month had not ended when it was computed),
    as a SQL boolean. -#}
{% macro is_provisional_flag() %}{{ 'true' if var('is_provisional', false) else 'false' }}{% endmacro %}

{% macro lit(value) %}'{{ value | string | replace("'", "''") }}'{% endmacro %}

{#- Source text timestamp (ISO 8601, with or without offset) to a UTC timestamp. -#}
{% macro to_utc_timestamp(column) %}{{ utc_timestamp_from_text(column) }}{% endmacro %}

{#- Points of a measure from a band table [[bound, points], ...]: first band whose bound the value
    reaches. `descending` bands are minimums (higher is better), ascending bands are maximums. -#}
{% macro band_points(value, bands, descending) -%}
    case
    {%- for band in bands %}
        when {{ value }} {{ '>=' if descending else '<=' }} {{ band[0] }} then {{ band[1] }}
    {%- endfor %}
        else 0
    end
{%- endmacro %}

{#- Luhn check digit of a text of `length` digits. -#}
{% macro luhn_check_digit(digits, length) -%}
    (10 - ((0
    {%- for j in range(length) %}
        {%- set pos = length - j %}
        {%- if j % 2 == 0 %}
        + (cast(substr({{ digits }}, {{ pos }}, 1) as integer) * 2
           - case when cast(substr({{ digits }}, {{ pos }}, 1) as integer) * 2 > 9 then 9 else 0 end)
        {%- else %}
        + cast(substr({{ digits }}, {{ pos }}, 1) as integer)
        {%- endif %}
    {%- endfor %}
    ) % 10)) % 10
{%- endmacro %}

{#- Source rows count when updated_at is before this: the month end, or the restatement moment. -#}
{% macro as_of_cutoff() %}cast('{{ var("as_of_cutoff", var("next_month")) }}' as timestamp){% endmacro %}
