-- Every landed fx rate, typed once per landed partition (the rate's month), and marked valid
-- (rejection_rule null) or rejected with the first rule it breaks. A rate has no versions: two
-- different rates for one currency and month are both rejected.
{{ replace_by_key_config('landing_partition') }}
{{ config(pre_hook="{{ drop_superseded_versions('fx_rates') }}") }}

with landed as (
    -- the landed files of the change log this model has not typed yet
    select * from {{ landed_rows('fx_rates') }}
),

read as (
    select
        *,
        {{ read_month('month') }} as month_read,
        {{ read_decimal('rate_to_reporting', 8) }} as rate_read
    from landed
),

{%- set reporting = rule('reporting_currency') %}
{%- set checks = column_checks(
        required=['currency', 'month', 'rate_to_reporting'],
        months={'month': 'month_read'},
        amounts={'rate_to_reporting': 'rate_read'})
    + [('bad_fx_rate', 'rate_read <= 0', "'fx rate must be positive, got ' || rate_to_reporting"),
       ('bad_fx_rate', "currency = '" ~ reporting ~ "' and rate_read <> 1",
        "'the reporting currency " ~ reporting ~ " must have rate 1, got ' || rate_to_reporting")] %}

checked as (
    select
        *,
        {{ first_broken_rule(checks) }}
    from read
),

versions as (
    -- valid rows of the same currency and month with different rates
    select
        *,
        min(case when rejection_rule is null then rate_read end) over (partition by currency, month_read)
        <> max(case when rejection_rule is null then rate_read end) over (partition by currency, month_read)
            as is_conflicting
    from checked
)

select
    versions.currency,
    versions.month_read as rate_month,
    versions.rate_read as rate_to_reporting,
    coalesce(versions.rejection_rule, case when versions.is_conflicting then 'conflicting_versions' end)
        as rejection_rule,
    coalesce(versions.rejection_reason, case
        when versions.is_conflicting
            then 'conflicting versions: same currency and month, different rates'
    end) as rejection_reason,
    case
        when versions.rejection_rule is not null or versions.is_conflicting
            then {{ json_record(record_columns('fx_rates'), 'versions') }}
    end as rejected_record,
    versions._source_file as source_file,
    versions._source_line as source_line,
    versions.landing_partition,
    versions.landing_file
from versions
