"""Gate (a) "landed": the extracted batch, after extract_and_land and before load_raw.

Datasets, per landed table: `<table>`, the rows this batch adds (the landed Parquet file, every
column text, empty text read as NULL): all rows for the first month, else the rows updated at or
after the as-of cutoff of the latest earlier month with a successful run (plus rows whose
updated_at cannot be parsed, but not the rows a delta landing carries over from its base run's
quarantine: tiering.increment), because the rest were validated by that run's gate already; and
`<table>__batch`, one row with the batch's row count from the landing manifest (`snapshot_rows`:
the rows as of the cutoff, also when only a delta was landed). So the
gate reads one month of changes into pandas, not the whole history: at 50 million order rows the
batch is ~2 GB of text, its monthly changes ~2 million rows.

Batch-level checks (severity error in gates.yml, a failure stops the run):
  columns_present           every column of the source format is there
  not_empty                 customers and orders have rows (on `<table>__batch`)
  row_count_drop            (on `<table>__batch`) the extracted row count did not drop by more than
                            `max_row_count_drop_share` against the latest successful run of the
                            previous month (skipped when that month has no successful run)
  same_month_row_count_drop (on `<table>__batch`) nor by more than `same_month_row_count_drop`
                            against the same month's last successful run (a rerun or restatement;
                            skipped for a month's first run)
  id_not_null_<col>         the id columns are filled in at least `ids_not_null_mostly` of the rows

Row-level validity (`valid_*`, severity warn, `mostly` = `row_validity_mostly`): the same rules
the load step enforces row by row in SQL (tiering.load), recorded here as evidence only. A row
breaking them is quarantined with its reason by load_raw; it does not fail the batch.
"""
from __future__ import annotations

import math

import great_expectations as gx
import pandas as pd

from tiering.landing import read_manifest
from tiering.runspec import add_months
from tiering.source import TABLES, sql_literal

E = gx.expectations

# the shapes the load step can parse (tiering.load casts with DuckDB; these regexes are the
# readable statement of the same contract: ISO 8601 timestamps, YYYY-MM-DD dates, YYYY-MM months,
# non-negative decimals)
_DATE = r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
ISO_TIMESTAMP = (rf"^{_DATE}(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{{1,9}})?)?)?"
                 r"(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?$")
ISO_DATE = rf"^{_DATE}$"
ISO_MONTH = r"^\d{4}-(?:0[1-9]|1[0-2])$"
NON_NEGATIVE_DECIMAL = r"^\+?(?:\d+(?:\.\d*)?|\.\d+)$"


def previous_extracted_rows(b) -> tuple[str | None, dict[str, int]]:
    """(run id, {table: rows of the as-of snapshot}) of the latest successful run of the previous month."""
    previous_month = add_months(b.spec.month, -1)
    rows = b.query("""
        select r.run_id, lb.source_table, coalesce(lb.snapshot_rows, lb.extracted_rows)
        from audit.load_batches lb
        join audit.runs r on r.run_id = lb.run_id
        where r.status = 'success' and r.month = ? and r.run_id <> ?
        qualify dense_rank() over (order by r.finished_at desc nulls last, r.started_at desc, r.run_id desc) = 1
    """, [previous_month, b.spec.run_id])
    if not rows:
        return None, {}
    return rows[0][0], {table: count for _, table, count in rows}


def same_month_rows(b) -> tuple[str | None, dict[str, int]]:
    """(run id, {table: rows of the as-of snapshot}) of the latest successful run of the same month."""
    rows = b.query("""
        select r.run_id, lb.source_table, coalesce(lb.snapshot_rows, lb.extracted_rows)
        from audit.load_batches lb
        join audit.runs r on r.run_id = lb.run_id
        where r.status = 'success' and r.month = ? and r.run_id <> ?
        qualify dense_rank() over (order by r.finished_at desc nulls last, r.started_at desc, r.run_id desc) = 1
    """, [b.spec.month, b.spec.run_id])
    if not rows:
        return None, {}
    return rows[0][0], {table: count for _, table, count in rows}


def changes_since(b) -> tuple[str | None, str | None]:
    """(month 'YYYY-MM', as-of cutoff) of the latest earlier month with a successful run, or Nones."""
    previous = b.scalar("select max(month) from audit.runs where status = 'success' and month < ?", [b.spec.month])
    if previous is None:
        return None, None
    return f"{previous:%Y-%m}", f"{add_months(previous, 1):%Y-%m-%d} 00:00:00+00"


UPDATED_AT = "try_cast(updated_at as timestamptz)"


def _landed_frames(b, name: str, path, landed_rows: int, since: str | None, carried_from: str | None = None
                   ) -> pd.DataFrame:
    spec = TABLES[name]
    present = [r[0] for r in b.query("select name from parquet_schema(?) where name is not null", [str(path)])]
    columns = [c for c in spec.columns if c in present]
    conditions = []
    if since is not None and spec.versioned and "updated_at" in columns:
        conditions.append(f"{UPDATED_AT} is null or {UPDATED_AT} >= timestamptz '{since}'")
    if carried_from is not None:
        # a delta also holds the rows its base run quarantined, landed again to be checked again:
        # known bad rows, not this batch's changes (without them a rerun's frame is only bad rows)
        conditions.append(f"_source_line not in (select source_line from quarantine.rejected_rows "
                          f"where run_id = {sql_literal(carried_from)} and source_table = {sql_literal(name)} "
                          f"and source_line is not null)")
    b.frame(f"{name}__batch", pd.DataFrame({"rows": [landed_rows]}))   # counted by the landing (manifest)
    limit = int(b.threshold("max_landed_rows_validated"))
    newest = ""
    if "updated_at" in columns:
        # rows per UTC day of updated_at (unparseable first, then the newest days): one cheap scan that
        # also gives the row count, and the day from which the newest `limit` rows are taken, so the
        # sort below holds at most `limit` rows plus one day's, not the whole file
        days = b.query(f"select floor(epoch({UPDATED_AT}) / 86400) as day, count(*) from read_parquet(?)"
                       f"{_where(conditions)} group by 1 order by 1 desc nulls first", [str(path)])
        rows = sum(n for _, n in days)
        if rows > limit:
            kept, first_day = 0, None
            for day, n in days:
                kept, first_day = kept + n, (first_day if day is None else day)
                if kept >= limit:
                    break
            conditions.append(f"{UPDATED_AT} is null" if first_day is None else
                              f"{UPDATED_AT} is null or epoch({UPDATED_AT}) >= {int(first_day) * 86400}")
    else:
        rows = b.scalar(f"select count(*) from read_parquet(?){_where(conditions)}", [str(path)])
    if rows > limit:
        # unparseable updated_at first (nulls sort first), then the newest; ties by source line
        order = f"{UPDATED_AT} desc nulls first, " if "updated_at" in columns else ""
        newest = f" order by {order}_source_line limit {limit}"
        b.note(f"{name}: row-level checks on the {limit:,} newest of the {rows:,} rows "
               f"(max_landed_rows_validated); the load step checks every row")
    select = ", ".join(f"nullif(trim({c}), '') as {c}" for c in columns) or "null as _no_columns"
    return b.dataset(name, f"select {select} from read_parquet(?){_where(conditions)}{newest}", [str(path)])


def _where(conditions: list[str]) -> str:
    return " where " + " and ".join(f"({c})" for c in conditions) if conditions else ""


def build(b) -> None:
    manifest = read_manifest(b.spec)
    previous_run, previous = previous_extracted_rows(b)
    if previous_run is None:
        b.note(f"row_count_drop not evaluated: no successful run of {add_months(b.spec.month, -1):%Y-%m}")
    mostly = b.threshold("row_validity_mostly")
    drop_share = b.threshold("max_row_count_drop_share")
    same_month_run, same_month = same_month_rows(b)
    same_month_drop = b.threshold("same_month_row_count_drop")
    reporting_currency = b.rules.data["reporting_currency"]
    currencies = {reporting_currency}
    fx = manifest["tables"].get("fx_rates")
    if fx:
        currencies |= {r[0] for r in b.query(
            "select distinct currency from read_parquet(?) where try_cast(rate_to_reporting as decimal(18, 6)) > 0 "
            "and currency is not null", [str(b.spec.landing_dir / fx["landed_file"])])}

    since_month, since = changes_since(b)
    if since_month is not None:
        b.note(f"row-level checks on the rows updated since {since_month}'s cutoff ({since}); "
               f"the batch counts on every landed row")

    for name, spec in TABLES.items():
        landed = manifest["tables"].get(name)
        if landed is None:
            if previous.get(name):  # the file existed last month and is gone now: that is a drop too
                b.frame(name, pd.DataFrame({c: pd.Series([], dtype="str") for c in spec.columns}))
                b.frame(f"{name}__batch", pd.DataFrame({"rows": [0]}))
            else:
                continue
        else:
            # the batch's size is its as-of snapshot's, also when only a delta was landed (tiering.increment)
            _landed_frames(b, name, b.spec.landing_dir / landed["landed_file"],
                           landed.get("snapshot_rows", landed["rows"]), since,
                           landed.get("base_run_id") if landed.get("landing") == "delta" else None)
        df = b.datasets[name]
        batch = f"{name}__batch"
        present = set(df.columns)

        b.expect(name, "columns_present", E.ExpectTableColumnsToMatchSet(column_set=list(spec.columns),
                                                                         exact_match=False),
                 f"{name}: every column of the source format is present")
        if not spec.optional_file:
            b.expect(name, "not_empty", E.ExpectColumnMaxToBeBetween(column="rows", min_value=1),
                     f"{name}: the extract has rows", frame=batch)
        if previous.get(name):
            minimum = math.ceil(previous[name] * (1 - drop_share))
            b.expect(name, "row_count_drop", E.ExpectColumnMaxToBeBetween(column="rows", min_value=minimum),
                     f"{name}: at least {minimum} rows: the previous month's run {previous_run} extracted "
                     f"{previous[name]}, a drop of more than {drop_share:.0%} means a truncated source",
                     frame=batch)
        if same_month.get(name):
            minimum = math.ceil(same_month[name] * (1 - same_month_drop))
            b.expect(name, "same_month_row_count_drop", E.ExpectColumnMaxToBeBetween(column="rows", min_value=minimum),
                     f"{name}: at least {minimum} rows: the month's last successful run {same_month_run} extracted "
                     f"{same_month[name]}, a drop of more than {same_month_drop:.0%} (same_month_row_count_drop) "
                     f"means a truncated source", frame=batch)
        for col in spec.key:
            if col in present:
                b.expect(name, f"id_not_null_{col}",
                         E.ExpectColumnValuesToNotBeNull(column=col, mostly=b.threshold("ids_not_null_mostly")),
                         f"{name}.{col} (id) is filled in")

        # --- row-level validity: evidence only, the load step quarantines the rows ---
        for col in spec.required:
            if col in present and col not in spec.key:
                b.expect(name, f"valid_required_{col}", E.ExpectColumnValuesToNotBeNull(column=col, mostly=mostly),
                         f"{name}.{col} is required (quarantine rule missing_value)")
        for col in spec.timestamps:
            if col in present:
                b.expect(name, f"valid_timestamp_{col}",
                         E.ExpectColumnValuesToMatchRegex(column=col, regex=ISO_TIMESTAMP, mostly=mostly),
                         f"{name}.{col} is an ISO 8601 timestamp (quarantine rule bad_timestamp)")
        for col in spec.dates:
            if col in present:
                b.expect(name, f"valid_date_{col}",
                         E.ExpectColumnValuesToMatchRegex(column=col, regex=ISO_DATE, mostly=mostly),
                         f"{name}.{col} is a YYYY-MM-DD date (quarantine rule bad_date)")
        for col in getattr(spec, "months", ()):
            if col in present:
                b.expect(name, f"valid_month_{col}",
                         E.ExpectColumnValuesToMatchRegex(column=col, regex=ISO_MONTH, mostly=mostly),
                         f"{name}.{col} is a YYYY-MM month (quarantine rule bad_date)")
        for col in spec.amounts:
            if col in present:
                b.expect(name, f"valid_amount_{col}",
                         E.ExpectColumnValuesToMatchRegex(column=col, regex=NON_NEGATIVE_DECIMAL, mostly=mostly),
                         f"{name}.{col} is a non-negative decimal (quarantine rules bad_amount, negative_amount)")
        for col, allowed in spec.enums.items():
            if col in present:
                b.expect(name, f"valid_value_{col}",
                         E.ExpectColumnValuesToBeInSet(column=col, value_set=list(allowed), mostly=mostly),
                         f"{name}.{col} is one of {' | '.join(allowed)} (quarantine rule unknown_value)")
        if "currency" in present and name != "fx_rates":
            b.expect(name, "valid_currency",
                     E.ExpectColumnValuesToBeInSet(column="currency", value_set=sorted(currencies), mostly=mostly),
                     f"{name}.currency is the reporting currency or has fx rates (quarantine rule unknown_currency)")
        if {"due_on", "issued_on"} <= present:
            b.expect(name, "valid_due_not_before_issue",
                     E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="due_on", column_B="issued_on", or_equal=True,
                                                              ignore_row_if="either_value_is_missing", mostly=mostly),
                     f"{name}: due_on is not before issued_on (quarantine rule due_before_issue)")
        version = [*spec.key, "updated_at"] if spec.versioned else list(spec.key)
        if set(version) <= present and len(version) > 1:
            b.expect(name, "valid_unique_version",
                     E.ExpectCompoundColumnsToBeUnique(column_list=version, mostly=mostly),
                     f"{name}: one row per ({', '.join(version)}); the load quarantines differing rows as "
                     f"conflicting_versions (exact duplicate lines also count here, they are harmless)")
