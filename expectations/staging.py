"""Gate (b) "staging": after transform_staging (the run's month only).

Datasets, per table: `<table>`, the rows of its as-of table intermediate.int_<table>__as_of (the
latest valid version of each id as of the month end) that break one of its checks (DuckDB selects
every row with a duplicated id, an unknown reference or a late updated_at, so a good month hands GE
empty frames instead of millions of rows), and `<table>__counts` (its row count). And `rows_read`,
one row per table: the rows the month reads (the run's manifest, tiering.landing.read_manifest),
the typed rows of those partition versions in staging.stg_landing__<table> (valid + rejected by
the row rules) and the run's quarantined rows.

Checks (all severity error):
  <table>.not_empty                  customers and orders have as-of rows when the month read some
  <table>.unique_id                  one row per id (fx_rates: per currency and month)
  <table>.<col>_in_<table>           references resolve as of the month end: order -> customer,
                                     invoice -> customer, payment -> invoice, override -> customer
                                     (dbt rejects the rows breaking them: unknown_customer, unknown_invoice)
  <table>.updated_before_month_end   no as-of row with updated_at at or after the month end
  rows_read.rows_accounted_for       per table and partition: the rows the manifest says the month reads
                                     = the typed rows of those partition versions (valid + rejected);
                                     the unexpected values name the partitions that differ
  rows_read.quarantined_share_<table>
                                     at most `max_quarantined_share` of the rows the month reads were
                                     quarantined by the run (a whole file in a wrong format is a broken
                                     source, not bad rows); rows dated after the month (after_month_end)
                                     do not count: they are valid in their own month
"""
from __future__ import annotations

from datetime import UTC, datetime

import great_expectations as gx
import pandas as pd
from great_expectations.expectations.row_conditions import Column

from tiering.landing import read_manifest
from tiering.source import TABLES, UNPARSEABLE

E = gx.expectations

# the as-of tables name a few key columns otherwise
AS_OF_KEYS = {"fx_rates": ("currency", "rate_month")}
# (column, referenced table, its id) that must resolve as of the month end
REFERENCES = {
    "orders": [("customer_id", "customers", "customer_id")],
    "invoices": [("customer_id", "customers", "customer_id")],
    "payments": [("invoice_id", "invoices", "invoice_id")],
    "tier_overrides": [("customer_id", "customers", "customer_id")],
}


def as_of_table(name: str) -> str:
    return f"intermediate.int_{name}__as_of"


def build(b) -> None:
    month_end = datetime.fromisoformat(b.spec.as_of_cutoff).replace(tzinfo=UTC)
    cutoff = f"timestamp '{month_end:%Y-%m-%d %H:%M:%S}'"   # updated_at is naive UTC in the warehouse
    available = {name: b.columns("intermediate", f"int_{name}__as_of") for name in TABLES}
    manifest = read_manifest(b.spec)
    for name, columns in available.items():
        if not columns:
            b.note(f"{as_of_table(name)} does not exist: not checked")
            continue
        key = [c for c in AS_OF_KEYS.get(name, TABLES[name].key) if c in columns]
        if not key:
            continue
        table, keys = as_of_table(name), ", ".join(key)
        # The offending rows' keys first, each kind with the cheapest plan: the ids held more than
        # once (a hash aggregate over the key alone), the versions updated at or after the month end
        # (the table's zone maps skip the rest), the rows whose reference is unknown (an anti join:
        # a hash of the referenced ids). Then one pass picks those rows (a semi join on a small
        # set). Ids are never null here (a row without one is rejected: missing_value).
        parts = [f"duplicates as (select {keys} from {table} group by all having count(*) > 1)"]
        offending = [f"select {keys} from duplicates"]
        select, joins = [f"t.{c}" for c in key], []
        if "updated_at" in columns:
            select.append("t.updated_at::timestamptz as updated_at")
            offending.append(f"select {keys} from {table} where updated_at >= {cutoff}")
        references = []
        for i, (col, ref_table, ref_col) in enumerate(REFERENCES.get(name, [])):
            if col not in columns or ref_col not in available.get(ref_table, []):
                continue
            unknown = f"unknown_{col}"
            parts.append(f"{unknown} as (select {', '.join(f'a.{k}' for k in key)}, a.{col} from {table} a "
                         f"anti join {as_of_table(ref_table)} r on r.{ref_col} = a.{col} where a.{col} is not null)")
            offending.append(f"select {keys} from {unknown}")
            joins.append(f"left join {unknown} u{i} on " + " and ".join(f"u{i}.{k} = t.{k}" for k in key)
                         + f" and u{i}.{col} = t.{col}")
            select.append(f"u{i}.{col} as {unknown}")
            references.append((col, ref_table, unknown))
        # only the rows that break a check reach pandas (all of them: GE decides, and lists them);
        # the counts come from DuckDB
        b.dataset(name, f"with {', '.join(parts)}, offending as ({' union '.join(offending)}) "
                        f"select {', '.join(select)} from {table} t "
                        f"semi join offending o on {' and '.join(f'o.{k} = t.{k}' for k in key)} {' '.join(joins)}")
        b.dataset(f"{name}__counts", f"select count(*) as rows from {as_of_table(name)}")

        read = manifest["tables"][name]["rows"]
        if not TABLES[name].optional_file and read:
            b.expect(name, "not_empty", E.ExpectColumnMaxToBeBetween(column="rows", min_value=1),
                     f"{as_of_table(name)} has rows (the month reads {read} landed rows)", frame=f"{name}__counts")
        if len(key) == 1:
            b.expect(name, "unique_id", E.ExpectColumnValuesToBeUnique(column=key[0]),
                     f"one row per {key[0]} in {as_of_table(name)}")
        elif key:
            b.expect(name, "unique_id", E.ExpectCompoundColumnsToBeUnique(column_list=key),
                     f"one row per ({', '.join(key)}) in {as_of_table(name)}")
        for col, ref_table, unknown in references:
            b.expect(name, f"{col}_in_{ref_table}", E.ExpectColumnValuesToBeNull(column=unknown),
                     f"every {name}.{col} exists in {as_of_table(ref_table)} (the unexpected values are the "
                     f"unknown ids)")
        if "updated_at" in columns:
            b.expect(name, "updated_before_month_end",
                     E.ExpectColumnValuesToBeBetween(column="updated_at", max_value=month_end, strict_max=True),
                     f"no {name} row with updated_at at or after the month end {month_end:%Y-%m-%d}")

    rows_read(b, manifest)


def rows_read(b, manifest: dict) -> None:
    """rows_read: per table, the rows the month reads against its typed and quarantined rows."""
    partitions = pd.DataFrame(
        [(name, partition, v["file"], v["rows"]) for name, table in manifest["tables"].items()
         for partition, v in table["partitions"].items()],
        columns=["source_table", "landing_partition", "landing_file", "rows"]).astype({"rows": "int64"})
    b.con.register("run_partitions", partitions)
    month = b.spec.month_text
    typed = " union all ".join(
        f"select '{name}' as source_table, landing_partition, landing_file, count(*) as typed_rows, "
        f"count(*) filter (where rejection_rule is null) as valid_rows from staging.stg_landing__{name} "
        f"where landing_partition <= '{month}' or landing_partition = '{UNPARSEABLE}' group by all"
        for name in TABLES if b.table_exists("staging", f"stg_landing__{name}"))
    b.dataset("rows_read", f"""
        with typed as ({typed or "select null as source_table, null as landing_partition, null as landing_file, "
                                  "0 as typed_rows, 0 as valid_rows where false"}),
             -- per partition version: read (manifest) against typed; a partition typed from another
             -- version than the one read shows as two lines
             compared as (
                 select coalesce(r.source_table, t.source_table) as source_table,
                        coalesce(r.landing_partition, t.landing_partition) as landing_partition,
                        coalesce(r.rows, 0) as read_rows, coalesce(t.typed_rows, 0) as typed_rows,
                        coalesce(t.valid_rows, 0) as valid_rows
                 from run_partitions r
                 full join typed t
                   on r.source_table = t.source_table and r.landing_partition = t.landing_partition
                  and r.landing_file = t.landing_file),
             quarantined as (
                 -- rows dated after the month (after_month_end) are sound rows, valid in their own month
                 select source_table, count(*) filter (where rule <> 'after_month_end') as quarantined_rows
                 from quarantine.rejected_rows where run_id = ? group by all),
             tables as (select unnest(?) as source_table)
        select tables.source_table,
               coalesce(sum(c.read_rows), 0)::bigint as read_rows,
               coalesce(sum(c.typed_rows), 0)::bigint as typed_rows,
               coalesce(sum(c.valid_rows), 0)::bigint as valid_rows,
               coalesce(sum(c.typed_rows - c.valid_rows), 0)::bigint as rejected_rows,
               -- null when every partition's typed rows are the rows read
               string_agg(c.source_table || ' ' || c.landing_partition || ': ' || c.read_rows || ' read, '
                          || c.typed_rows || ' typed', '; ' order by c.landing_partition)
                   filter (where c.read_rows <> c.typed_rows)
                   as unaccounted_partitions,
               coalesce(any_value(q.quarantined_rows), 0)::bigint as quarantined_rows,
               case when sum(c.read_rows) > 0 then coalesce(any_value(q.quarantined_rows), 0) / sum(c.read_rows)
                    else 0 end as quarantined_share
        from tables
        left join compared c on c.source_table = tables.source_table
        left join quarantined q on q.source_table = tables.source_table
        group by tables.source_table order by tables.source_table""", [b.spec.run_id, list(TABLES)])
    b.con.unregister("run_partitions")
    b.expect("rows_read", "rows_accounted_for", E.ExpectColumnValuesToBeNull(column="unaccounted_partitions"),
             "every row the month reads (the run's manifest) is typed in staging.stg_landing__<table>, valid or "
             "rejected, from the partition version read (the unexpected values name the partitions that differ)")
    maximum = b.threshold("max_quarantined_share")
    for table in b.datasets["rows_read"]["source_table"].tolist():
        b.expect("rows_read", f"quarantined_share_{table}",
                 E.ExpectColumnMaxToBeBetween(column="quarantined_share", max_value=maximum,
                                              row_condition=Column("source_table") == table),
                 f"at most {maximum:.0%} of the {table} rows the month reads are quarantined (after_month_end "
                 f"not counted)")
