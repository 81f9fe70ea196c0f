-- Rank of each ranking unit with positive value (highest first, ties by id ascending), its value
-- share, the share of everyone ranked strictly before it (prior_share), and RFM scores.
-- The ranking unit is the customer, or its group (parent + children summed) when the rules
-- file sets value.group_accounts: then every member carries its group's rank and shares.
-- Units without positive value are not ranked.
-- The value ranked is the rules file's value.measure: net_revenue (default) or gross_margin, where an
-- order with an unknown cost adds nothing to the margin (int_customer_value_monthly.gross_margin;
-- a customer without any known cost has margin 0, so is not ranked).
{%- set group_accounts = rule('value.group_accounts') %}
{%- set measure = rule_or('value.measure', 'net_revenue') %}
with customer_value as (
    select
        *,
        {% if group_accounts %}coalesce(parent_customer_id, customer_id){% else %}customer_id{% endif %}
            as ranking_unit_id
    from {{ ref('int_customer_value_monthly') }}
),

unit_value as (
    select
        ranking_unit_id,
        sum({{ 'coalesce(gross_margin, 0)' if measure == 'gross_margin' else 'net_revenue' }}) as ranking_value,
        coalesce(bool_or(has_positive_purchase), false) as unit_has_positive_purchase,
        sum(order_count) as unit_order_count,
        min(recency_days) as unit_recency_days
    from customer_value
    group by ranking_unit_id
),

active_units as (
    select *
    from unit_value
    where ranking_value > 0
),

ranked as (
    select
        ranking_unit_id,
        ranking_value,
        row_number() over (order by ranking_value desc, ranking_unit_id asc) as value_rank,
        coalesce(sum(ranking_value) over (
            order by ranking_value desc, ranking_unit_id asc rows between unbounded preceding and 1 preceding
        ), 0) as prior_value,
        sum(ranking_value) over () as total_value,
        count(*) over () as ranked_customers,
        -- RFM: rank from worst to best, ties share the lowest rank, so ties share a score
        rank() over (order by unit_recency_days desc) as recency_rank,
        rank() over (order by unit_order_count) as frequency_rank,
        rank() over (order by ranking_value) as monetary_rank
    from active_units
)

select
    customer_value.*,
    coalesce(ranked.ranking_value, unit_value.ranking_value) as ranking_value,
    {{ lit(measure) }} as value_measure,
    unit_value.unit_has_positive_purchase as has_earlier_purchase,
    ranked.value_rank is not null as is_active,
    ranked.value_rank,
    ranked.prior_value,
    ranked.total_value,
    coalesce(ranked.ranked_customers, (select count(*) from active_units)) as ranked_customers,
    case
        when ranked.value_rank is not null
            then cast(ranked.ranking_value as {{ double_type() }}) / cast(ranked.total_value as {{ double_type() }})
        else 0
    end as value_share,
    cast(ranked.prior_value as {{ double_type() }}) / cast(ranked.total_value as {{ double_type() }}) as prior_share,
    cast(ranked.prior_value + ranked.ranking_value as {{ double_type() }})
    / cast(ranked.total_value as {{ double_type() }}) as cumulative_share,
    -- (LT02 off for the loop: its comma comes from Jinja, which sqlfluff's layout rule cannot place)
    -- noqa: disable=LT02
    {%- for dimension in ['recency', 'frequency', 'monetary'] %}
    cast(floor((ranked.{{ dimension }}_rank - 1) * {{ rule('value.rfm_buckets') }}
               / cast(ranked.ranked_customers as {{ double_type() }})) as integer) + 1
        as {{ dimension }}_score{{ ',' if not loop.last }}
    {%- endfor %}
-- noqa: enable=LT02
from customer_value
left join unit_value on unit_value.ranking_unit_id = customer_value.ranking_unit_id
left join ranked on ranked.ranking_unit_id = customer_value.ranking_unit_id
