-- Customer codes (rows made under the current rules): format <tier>-<region>-<scale>-<sequence>-
-- <check>, tier part = the final tier's code, a valid Luhn check digit, and a sequence number
-- that belongs to one customer and never changes for that customer. Returns the offending codes.
-- Checked on the months the run rebuilt and the month computed before them (macros/months.sql):
-- every rebuild compares a month with its neighbours, so a customer's number is the same in
-- every month by induction; and as a customer known once is known in every later month, two
-- customers sharing a number would share it within a month.
{%- set code = rule('customer_code') %}
{%- set seq_digits = code['sequence_digits'] %}
{%- set code_pattern = '[0-9]{2}-[0-9]{2}-[0-9]-[0-9]{' ~ seq_digits ~ '}-[0-9]' %}
with codes as (
    select
        customer_id,
        month,
        final_tier,
        customer_code,
        replace(customer_code, '-', '') as all_digits,
        split_part(customer_code, '-', 4) as sequence_part
    from {{ ref('customer_tier_monthly') }}
    where
        rule_version = {{ lit(var('rule_version')) }}
        and month in ({{ months_read() }})
),

checked as (
    select
        *,
        substr(all_digits, 1, {{ 5 + seq_digits }}) as payload
    from codes
),

bad_codes as (
    select
        customer_id,
        month,
        customer_code,
        'malformed or wrong tier code or check digit' as problem
    from checked
    where
        month in ({{ months_rebuilt() }})
        and (
            not {{ regexp_full_match('customer_code', code_pattern) }}
            or substr(customer_code, 1, 2) <> case final_tier
                {%- for tier, tier_code in code['tier_codes'].items() %}
                when '{{ tier }}' then '{{ tier_code }}'
                {%- endfor %}
            end
            or cast(substr(all_digits, {{ 6 + seq_digits }}, 1) as integer)
            <> {{ luhn_check_digit('payload', 5 + seq_digits) }}
        )
),

-- (a group holds two different values <=> its min and max differ: the groups are found by min and
-- max, and the distinct values listed for those few groups only; counting distinct values in
-- every group cost 2.0-2.3 s at 1M customers, this 1.2-1.3 s)
customers_with_several_sequences as (
    select customer_id
    from codes
    group by customer_id
    having min(sequence_part) <> max(sequence_part)
),

unstable_sequences as (
    select
        customer_id,
        cast(null as date) as month,
        {{ distinct_list('sequence_part') }} as customer_code,
        'customer has several sequence numbers' as problem
    from codes
    where customer_id in (select customers_with_several_sequences.customer_id from customers_with_several_sequences)
    group by customer_id
),

sequences_of_several_customers as (
    select
        month,
        sequence_part
    from codes
    group by month, sequence_part
    having min(customer_id) <> max(customer_id)
),

shared_sequences as (
    select
        {{ distinct_list('codes.customer_id') }} as customer_id,
        codes.month,
        codes.sequence_part as customer_code,
        'sequence number shared by several customers' as problem
    from codes
    inner join sequences_of_several_customers as shared
        on shared.month = codes.month and shared.sequence_part = codes.sequence_part
    group by codes.month, codes.sequence_part
)

select * from bad_codes
union all
select * from unstable_sequences
union all
select * from shared_sequences
