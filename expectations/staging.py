"""Gate (b) "staging": after the dbt staging models (the current run's month only).

Datasets: per staging table `staging.stg_raw__<table>`, `<table>`: the rows that break one of
its checks (ids, references, updated_at; DuckDB selects every row with a duplicated id, an
unknown reference or a late updated_at, so a good month hands GE empty frames instead of
millions of rows) and `<table>__counts` (its row count); and `load_batches` (this run's rows of
audit.load_batches).

When the staging build updated the tables in place (audit.staging_state.updated_in_place: the
run's batch is a delta on the batch they held, which passed this gate in its own successful
run), the row checks read only the ids the run's own rows touch: every other row is the one
that passed then (ids are never removed, and an earlier month end is before this one). The
update in place wrote those ids' rows with the run's staged_before (macros/staging.sql), so a
constant filter finds them.

Checks (all severity error):
  <table>.not_empty                  customers and orders have rows when the load loaded some
  <table>.unique_id                  one row per id (the latest version as of the month end)
  <table>.<col>_in_<table>           references resolve: order -> customer, invoice -> customer,
                                     payment -> invoice (the references of tiering.load.REFERENCES;
                                     rows breaking them must have been quarantined by the load)
  <table>.updated_before_month_end   no row with updated_at at or after the as-of cutoff (the month end)
  load_batches.rows_accounted_for    loaded + quarantined = extracted, per table
  load_batches.quarantined_share_<table>
                                     at most `max_quarantined_share` of the as-of snapshot's rows were quarantined
                                     (a whole file in a wrong format is a broken batch, not bad rows); rows
                                     dated after the month (after_month_end) do not count
"""
from __future__ import annotations

from datetime import UTC, datetime

import great_expectations as gx
from great_expectations.expectations.row_conditions import Column

from tiering.load import REFERENCES
from tiering.source import TABLES

E = gx.expectations

# staging renames a few key columns
STAGING_KEYS = {"fx_rates": ("currency", "rate_month")}


def staging_table(name: str) -> str:
    return f"stg_raw__{name}"


def build(b) -> None:
    # the as-of cutoff: the month end, or a restatement's moment (it sees the rows updated since)
    month_end = datetime.fromisoformat(b.spec.as_of_cutoff).replace(tzinfo=UTC)
    available = {name: b.columns("staging", staging_table(name)) for name in TABLES}
    # the valid rows of the run's as-of batch: loaded now, or inherited from a delta's base run
    # (snapshot_rows - extracted_rows: the rows of the snapshot that were not landed again)
    loaded = dict(b.query("select source_table, loaded_rows + coalesce(snapshot_rows - extracted_rows, 0) "
                          "from audit.load_batches where run_id = ?", [b.spec.run_id]))
    in_place = bool(b.scalar("select bool_or(updated_in_place) from audit.staging_state where batch_id = ?",
                             [b.spec.run_id]))
    if in_place:
        b.note("staging was updated in place: the row checks read the ids this run's own rows touch")
    for name, columns in available.items():
        if not columns:
            b.note(f"staging.{staging_table(name)} does not exist: not checked")
            continue
        key = [c for c in STAGING_KEYS.get(name, TABLES[name].key) if c in columns]
        # the rows checked: every row, or after an update in place those of the touched ids
        rows = f"staging.{staging_table(name)}"
        if in_place and len(key) == 1 and name not in STAGING_KEYS:
            rows = f"(select * from {rows} where staged_before = date '{b.spec.next_month:%Y-%m-%d}')"
        select = [f"t.{c}" for c in key]
        suspicious = ["duplicates._copies is not null"] if key else []
        if "updated_at" in columns:
            select.append("t.updated_at::timestamptz as updated_at")   # staging may keep naive UTC
            suspicious.append(f"t.updated_at::timestamptz >= timestamptz '{month_end:%Y-%m-%d %H:%M:%S}+00'")
        # the ids held more than once: a group-by (a hash aggregate over the key alone), not a
        # window over every row
        joins = [f"left join (select {', '.join(key)}, count(*) as _copies from {rows} "
                 f"group by {', '.join(key)} having count(*) > 1) duplicates on "
                 + " and ".join(f"duplicates.{k} is not distinct from t.{k}" for k in key)] if key else []
        references = []
        for i, (col, ref_table, ref_col, _rule) in enumerate(REFERENCES.get(name, [])):
            if col not in columns or ref_col not in available.get(ref_table, []):
                continue
            alias = f"r{i}"
            unknown = f"unknown_{col}"
            select.append(f"case when t.{col} is not null and {alias}.{ref_col} is null then t.{col} end as {unknown}")
            referenced = f"select distinct {ref_col} from staging.{staging_table(ref_table)}"
            if rows != f"staging.{staging_table(name)}":   # the referenced ids of the touched rows only
                referenced += f" where {ref_col} in (select {col} from {rows})"
            joins.append(f"left join ({referenced}) {alias} on {alias}.{ref_col} = t.{col}")
            suspicious.append(f"(t.{col} is not null and {alias}.{ref_col} is null)")
            references.append((col, ref_table, unknown))
        if not select:
            continue
        # only the rows that break a check reach pandas (all of them: GE decides, and lists them);
        # the counts come from DuckDB
        b.dataset(name, f"select {', '.join(select)} from {rows} t {' '.join(joins)} "
                        f"where {' or '.join(suspicious) or 'false'}")
        b.dataset(f"{name}__counts", f"select count(*) as rows from staging.{staging_table(name)}")

        if not TABLES[name].optional_file and loaded.get(name):
            b.expect(name, "not_empty", E.ExpectColumnMaxToBeBetween(column="rows", min_value=1),
                     f"staging.{staging_table(name)} has rows ({loaded[name]} valid rows in the batch)",
                     frame=f"{name}__counts")
        if len(key) == 1:
            b.expect(name, "unique_id", E.ExpectColumnValuesToBeUnique(column=key[0]),
                     f"one row per {key[0]} in staging.{staging_table(name)}")
        elif key:
            b.expect(name, "unique_id", E.ExpectCompoundColumnsToBeUnique(column_list=key),
                     f"one row per ({', '.join(key)}) in staging.{staging_table(name)}")
        for col, ref_table, unknown in references:
            b.expect(name, f"{col}_in_{ref_table}", E.ExpectColumnValuesToBeNull(column=unknown),
                     f"every {name}.{col} exists in staging.{staging_table(ref_table)} (the unexpected values "
                     f"are the unknown ids)")
        if "updated_at" in columns:
            b.expect(name, "updated_before_month_end",
                     E.ExpectColumnValuesToBeBetween(column="updated_at", max_value=month_end, strict_max=True),
                     f"no {name} row with updated_at at or after the month end {month_end:%Y-%m-%d}")

    b.dataset("load_batches", """
        select source_table, extracted_rows, loaded_rows, quarantined_rows,
               extracted_rows - loaded_rows - quarantined_rows as unaccounted_rows,
               -- of the as-of snapshot (a delta landing extracts fewer rows: tiering.increment)
               -- not the rows dated after the month (after_month_end): sound rows, valid in their own
               -- month (a restatement as of today sees every later month's rows)
               case when coalesce(snapshot_rows, extracted_rows) > 0
                    then (quarantined_rows - (select count(*) from quarantine.rejected_rows q
                                              where q.run_id = lb.run_id and q.source_table = lb.source_table
                                                and q.rule = 'after_month_end'))
                         / coalesce(snapshot_rows, extracted_rows) else 0 end as quarantined_share
        from audit.load_batches lb where run_id = ? order by source_table""", [b.spec.run_id])
    batches = b.datasets["load_batches"]
    b.expect("load_batches", "rows_accounted_for",
             E.ExpectColumnValuesToBeBetween(column="unaccounted_rows", min_value=0, max_value=0),
             "every extracted row is either loaded or quarantined (loaded + quarantined = extracted)")
    b.expect("load_batches", "has_batches", E.ExpectTableRowCountToBeBetween(min_value=1),
             "load_raw recorded its batches for this run")
    maximum = b.threshold("max_quarantined_share")
    for table in batches["source_table"].tolist():
        b.expect("load_batches", f"quarantined_share_{table}",
                 E.ExpectColumnMaxToBeBetween(column="quarantined_share", max_value=maximum,
                                              row_condition=Column("source_table") == table),
                 f"at most {maximum:.0%} of the extracted {table} rows are quarantined")
