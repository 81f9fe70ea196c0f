{#- The quarantine's record of a rejected row (quarantine.rejected_rows.record): its values as
    landed, text exactly as in the source. -#}

{#- The columns of a table's record: its landed columns less the free text of an override's
    `reason` (it may hold personal data). Customers' personal columns (name, e-mail, phone) are
    landed apart (tiering.landing), so no record can hold them. The same for a row rejected by
    its own row rule (stg_landing__*) and one rejected by the month's rules (int_*__checked). -#}
{% macro record_columns(table) -%}
    {{- return({
        'customers': ['customer_id', 'region', 'industry', 'customer_kind', 'parent_customer_id', 'created_at',
                      'updated_at'],
        'orders': ['order_id', 'customer_id', 'ordered_at', 'status', 'currency', 'amount', 'cost', 'updated_at',
                   'original_order_id'],
        'invoices': ['invoice_id', 'order_id', 'customer_id', 'issued_on', 'due_on', 'amount_due', 'currency',
                     'updated_at'],
        'payments': ['payment_id', 'invoice_id', 'paid_at', 'amount', 'updated_at'],
        'fx_rates': ['currency', 'month', 'rate_to_reporting'],
        'tier_overrides': ['override_id', 'customer_id', 'tier', 'approver', 'valid_from', 'valid_until',
                           'updated_at'],
    }[table]) -}}
{%- endmacro %}

{#- The landed files that hold a row of `relation` (a model with source_table and landing_file),
    per table: {table: "'file', ..."} for `landing_file in (...)`, so that the change log is read
    from those files only. Empty when the relation is not built yet (a compile on its own). -#}
{% macro landed_files_by_table(relation) -%}
    {%- set files = {} -%}
    {%- if execute and adapter.get_relation(relation.database, relation.schema, relation.identifier) is not none -%}
        {%- set query -%}
            select source_table, landing_file from {{ relation }} group by source_table, landing_file
        {%- endset -%}
        {%- for table, file in run_query(query).rows -%}
            {%- do files.setdefault(table, []).append(file) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set listed = {} -%}
    {%- for table, names in files.items() -%}
        {%- do listed.update({table: sql_text_list(names)}) -%}
    {%- endfor -%}
    {{- return(listed) -}}
{%- endmacro %}
