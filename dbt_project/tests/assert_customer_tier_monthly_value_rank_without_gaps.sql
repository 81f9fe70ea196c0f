-- Per month, the value ranks are 1..n without gaps, only active customers have one, and (unless
-- group accounts share their group's rank) no two customers have the same rank.
-- Checked on the rows made under the current rules (rule_version), as group_accounts may differ
-- in older rules. Returns the offending months.
{%- set group_accounts = rule('value.group_accounts') %}
with months as (
    select
        month,
        count(value_rank) as ranked_rows,
        count(distinct value_rank) as distinct_ranks,
        min(value_rank) as min_rank,
        max(value_rank) as max_rank,
        count(case when is_active <> (value_rank is not null) then 1 end) as rank_activity_mismatches
    from {{ ref('customer_tier_monthly') }}
    where
        rule_version = {{ lit(var('rule_version')) }}
        and month in ({{ months_rebuilt() }})
    group by month
)

select *
from months
where
    rank_activity_mismatches > 0
    or (distinct_ranks > 0 and (min_rank <> 1 or max_rank <> distinct_ranks))
    {%- if not group_accounts %}
    or ranked_rows <> distinct_ranks
    {%- endif %}
