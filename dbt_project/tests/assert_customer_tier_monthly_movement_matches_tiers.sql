-- movement agrees with the final tiers: `new` exactly when there is no previous tier; `upgraded`
-- to a better (smaller) letter, `downgraded` to a worse one, `unchanged` to the same; `lapsed`
-- only for a customer without value now. Returns the offending rows.
select
    customer_id,
    month,
    movement,
    previous_final_tier,
    final_tier,
    is_active
from {{ ref('customer_tier_monthly') }}
where
    month in ({{ months_rebuilt() }})
    and (
        (movement = 'new') <> (previous_final_tier is null)
        or (movement = 'upgraded' and not final_tier < previous_final_tier)
        or (movement = 'downgraded' and not final_tier > previous_final_tier)
        or (movement = 'unchanged' and final_tier <> previous_final_tier)
        or (movement = 'lapsed' and is_active)
    )
