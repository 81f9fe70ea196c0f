-- One row per invoice as of the end of the month computed: its latest version in the month's reach
-- (the version no later version there names as its previous one: stg_landing__invoices), unless a
-- month rule rejects it (int_invoices__checked; the invoice is then left out of the month, and that
-- version is quarantined). A table: several readers (gate (b), the
-- models after it) read it once written, instead of each filtering the change log again.

with versions as (
    select * from {{ ref('int_invoices__checked') }}
    where is_version
),

superseded as (
    select
        invoice_id,
        previous_updated_at
    from {{ ref('stg_landing__invoices') }}
    where is_version and previous_updated_at is not null and {{ in_month_reach() }}
)

select
    versions.invoice_id,
    versions.order_id,
    versions.customer_id,
    versions.issued_on,
    versions.due_on,
    versions.amount_due,
    versions.currency,
    versions.updated_at
from versions
left join superseded
    on
        versions.invoice_id = superseded.invoice_id
        and versions.updated_at = superseded.previous_updated_at
where superseded.invoice_id is null and versions.rejection_rule is null
