-- One row per payment as of the end of the month computed: its latest version in the month's reach
-- (the version no later version there names as its previous one: stg_landing__payments), unless a
-- month rule rejects it (int_payments__checked; the payment is then left out of the month, and that
-- version is quarantined). A table: several readers (gate (b), the
-- models after it) read it once written, instead of each filtering the change log again.

with versions as (
    select * from {{ ref('int_payments__checked') }}
    where is_version
),

superseded as (
    select
        payment_id,
        previous_updated_at
    from {{ ref('stg_landing__payments') }}
    where is_version and previous_updated_at is not null and {{ in_month_reach() }}
)

select
    versions.payment_id,
    versions.invoice_id,
    versions.paid_at,
    versions.amount,
    versions.updated_at
from versions
left join superseded
    on
        versions.payment_id = superseded.payment_id
        and versions.updated_at = superseded.previous_updated_at
where superseded.payment_id is null and versions.rejection_rule is null
