"""Gate (a) "landed": what the month reads from the change log, after extract_and_land and before dbt.

Evidence: the run's manifest (tiering.landing.read_manifest: every partition version the month
reads, with its row count) and the Parquet partitions the run landed (the manifest's `landed`: a
steady month lands one new partition per table, a first month every partition up to the month).
Partitions landed by earlier runs passed this gate then.

Datasets: one per table, `<table>`, a one-row frame computed in DuckDB: `rows` (the rows the month
reads, from the manifest), `landed_rows`, `validated_rows`, `missing_columns` and, per row-level
check, `<check>_share` (the share of the validated rows that pass it). The rows themselves never
reach pandas: at 50 million order rows a first month lands them all.

Batch-level checks (severity error in gates.yml, a failure stops the run):
  columns_present           every landed file has the table's landed columns (customers' personal
                            columns are checked in their own files, customers_personal)
  not_empty                 customers and orders: the month reads rows
  row_count_drop            the rows the month reads did not drop by more than `max_row_count_drop_share`
                            against the rows the previous month's last successful run read (its
                            manifest, audit.runs.landing_dir; skipped, with a note, when there is none)
  same_month_row_count_drop nor by more than `same_month_row_count_drop` against the same month's last
                            successful run (a rerun or a --restate; skipped for a month's first run)
  id_not_null_<col>         the id columns are filled in on at least `ids_not_null_mostly` of the landed rows

Row-level validity (`valid_*`, severity warn, passing while at least `row_validity_mostly` of the
landed rows pass): the shapes the row rules of the staging models (macros/row_rules.sql) accept,
stated here as regular expressions and value sets, as evidence only. A row breaking them is
rejected with its reason by dbt and listed in quarantine.rejected_rows; it does not fail the batch.

The row-derived checks (ids and valid_*) scan at most `max_landed_rows_validated` landed rows per
table: the partition `unparseable` first, then the newest landed partitions, the last one cut at
that many rows in line order (a note says so). Each check's counts and up to three offending values
ride along as evidence in audit.dq_results (unexpected_count, observed_value).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import great_expectations as gx
import pandas as pd

from tiering.landing import read_manifest
from tiering.personal import personal_file
from tiering.runspec import add_months
from tiering.source import TABLES, UNPARSEABLE, TableSpec, sql_literal

E = gx.expectations

# the shapes the staging models can type (they cast with the warehouse; these regexes are the
# readable statement of the same contract: ISO 8601 timestamps, YYYY-MM-DD dates, YYYY-MM months,
# decimals)
_DATE = r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
ISO_TIMESTAMP = (rf"^{_DATE}(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{{1,9}})?)?)?"
                 r"(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?$")
ISO_DATE = rf"^{_DATE}$"
ISO_MONTH = r"^\d{4}-(?:0[1-9]|1[0-2])$"
NON_NEGATIVE_DECIMAL = r"^\+?(?:\d+(?:\.\d*)?|\.\d+)$"
SIGNED_DECIMAL = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$"
# amounts whose sign depends on the row: (table, column) -> SQL condition under which the amount
# is zero or negative (else it is zero or positive); stg_landing__orders: a credit note's amount
SIGNED_AMOUNTS = {("orders", "amount"): "status = 'credit_note'"}
EXAMPLES = 3   # offending values quoted per check, distinct ones of the EXAMPLE_ROWS smallest
EXAMPLE_ROWS = 20
EMPTY = "''"


def _regex(column: str, pattern: str) -> str:
    return f"regexp_full_match({column}, {sql_literal(pattern)})"


def row_checks(spec: TableSpec, columns: set[str], currencies: set[str]) -> list[tuple[str, str, str, str, str]]:
    """The row-derived checks of a table on the landed rows (text, trimmed, empty as NULL):
    (check, column quoted in the evidence, SQL of a row breaking it, SQL of a row it applies to,
    description)."""
    checks = []
    for col in spec.key:
        if col in columns:
            checks.append((f"id_not_null_{col}", col, f"{col} is null", "true", f"{spec.name}.{col} (id) is filled in"))
    for col in spec.required:
        if col in columns and col not in spec.key:
            checks.append((f"valid_required_{col}", col, f"{col} is null", "true",
                           f"{spec.name}.{col} is required (rule missing_value)"))
    shapes = [("timestamp", c, ISO_TIMESTAMP, "an ISO 8601 timestamp (rule bad_timestamp)") for c in spec.timestamps]
    shapes += [("date", c, ISO_DATE, "a YYYY-MM-DD date (rule bad_date)") for c in spec.dates]
    shapes += [("month", c, ISO_MONTH, "a YYYY-MM month (rule bad_date)") for c in spec.months]
    for kind, col, pattern, text in shapes:
        if col in columns:
            checks.append((f"valid_{kind}_{col}", col, f"not {_regex(col, pattern)}", f"{col} is not null",
                           f"{spec.name}.{col} is {text}"))
    for col in spec.amounts:
        if col not in columns:
            continue
        negative = SIGNED_AMOUNTS.get((spec.name, col))
        if negative:
            value = f"try_cast({col} as double)"
            bad = (f"not {_regex(col, SIGNED_DECIMAL)} or ({value} < 0 and not coalesce({negative}, false)) "
                   f"or ({value} > 0 and coalesce({negative}, false))")
            text = (f"a decimal, not positive when {negative}, else not negative (rules bad_amount, "
                    f"negative_amount, positive_credit_note)")
        else:
            bad, text = f"not {_regex(col, NON_NEGATIVE_DECIMAL)}", "a non-negative decimal (rules bad_amount, " \
                                                                    "negative_amount)"
        checks.append((f"valid_amount_{col}", col, bad, f"{col} is not null", f"{spec.name}.{col} is {text}"))
    for col, allowed in spec.enums.items():
        if col in columns:
            checks.append((f"valid_value_{col}", col, f"{col} not in ({', '.join(map(sql_literal, allowed))})",
                           f"{col} is not null", f"{spec.name}.{col} is one of {' | '.join(allowed)} "
                                                 f"(rule unknown_value)"))
    if "currency" in columns and spec.name != "fx_rates":
        checks.append(("valid_currency", "currency",
                       f"currency not in ({', '.join(map(sql_literal, sorted(currencies)))})", "currency is not null",
                       f"{spec.name}.currency is the reporting currency or has fx rates (rule unknown_currency)"))
    if {"due_on", "issued_on"} <= columns:
        checks.append(("valid_due_not_before_issue", "due_on", "due_on < issued_on",
                       "due_on is not null and issued_on is not null",
                       f"{spec.name}: due_on is not before issued_on (rule due_before_issue)"))
    return checks


def last_success(b, month) -> tuple[str, Path] | None:
    """(run id, manifest path) of the latest successful run of `month` other than this run."""
    rows = b.query("""
        select run_id, landing_dir from audit.runs
        where status = 'success' and month = ? and run_id <> ?
        order by finished_at desc nulls last, started_at desc, run_id desc limit 1""", [month, b.spec.run_id])
    return (rows[0][0], Path(rows[0][1] or "")) if rows else None


def rows_read_by(b, month, check: str) -> tuple[str | None, dict[str, int]]:
    """(run id, {table: rows it read}) of the month's latest successful run, from its manifest; a note
    says why `check` is not evaluated when there is none or its manifest cannot be read."""
    found = last_success(b, month)
    if found is None:
        if month != b.spec.month:
            b.note(f"{check} not evaluated: no successful run of {month:%Y-%m}")
        return None, {}
    run_id, path = found
    try:
        tables = json.loads(path.read_text())["tables"]
        return run_id, {name: int(t["rows"]) for name, t in tables.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        b.note(f"{check} not evaluated: the landing manifest of run {run_id} ({path}) cannot be read "
               f"({type(exc).__name__})")
        return None, {}


def validated_files(table: dict, limit: int) -> tuple[list[str], tuple[str, int] | None, int]:
    """The landed files whose rows the row-derived checks scan: `unparseable` first, then the newest
    partitions, until `limit` rows: (whole files, (the file cut, rows kept from it) or None, rows)."""
    landed = [p for p in table["landed"] if p == UNPARSEABLE] + \
        sorted((p for p in table["landed"] if p != UNPARSEABLE), reverse=True)
    whole, kept = [], 0
    for partition in landed:
        version = table["partitions"][partition]
        if kept + version["rows"] > limit:
            rest = limit - kept
            return whole, ((version["file"], rest) if rest > 0 else None), limit
        whole.append(version["file"])
        kept += version["rows"]
    return whole, None, kept


def missing_columns(b, spec: TableSpec, files: list[str]) -> str | None:
    """'<file>: <columns>' for landed files lacking columns of the table's source format, or None."""
    expected = {f: list(spec.landed_columns) for f in files}
    if spec.personal:
        expected |= {str(personal_file(f)): [*spec.key, *spec.personal] for f in files}
    if not expected:
        return None
    present: dict[str, set[str]] = {f: set() for f in expected}
    existing = [f for f in expected if Path(f).is_file()]
    if existing:
        for file, column in b.query("select file_name, name from parquet_schema(?)", [existing]):
            present[file].add(column)
    lacking = [f"{Path(f).parent.name}/{Path(f).name} ({Path(f).parents[1].name}): "
               f"{', '.join(c for c in cols if c not in present[f]) if present[f] else 'file missing'}"
               for f, cols in expected.items() if not set(cols) <= present[f]]
    return "; ".join(lacking) or None


def landed_counts(b, spec: TableSpec, table: dict, checks: list, limit: int) -> dict:
    """One DuckDB scan of the validated landed rows: per check the rows it applies to, the rows
    breaking it and up to EXAMPLES offending values; and the duplicated versions."""
    whole, cut, expected_rows = validated_files(table, limit)
    files = whole + ([cut[0]] if cut else [])
    counts = {"validated_rows": 0}
    if not files:
        return counts
    present = {name for _, name in b.query("select file_name, name from parquet_schema(?)", [files])}
    columns = [c for c in spec.landed_columns if c in present]
    where = f"where not (filename = {sql_literal(cut[0])} and file_row_number >= {cut[1]})" if cut else ""
    rows = (f"select {', '.join(f'nullif(trim({c}), {EMPTY}) as {c}' for c in columns)} "
            f"from read_parquet(?, filename = true, file_row_number = true) {where}")
    # counts, and the smallest offending values (a top-n aggregate: bounded memory, and nearly free
    # where no row breaks the check; a distinct aggregate would cost as much again as the counts)
    aggregates = ["count(*)"]
    for _, column, bad, applies, _ in checks:
        aggregates += [f"count(*) filter (where {applies})", f"count(*) filter (where {applies} and ({bad}))",
                       f"min({column}, {EXAMPLE_ROWS}) filter (where {applies} and ({bad}))"]
    result = b.query(f"with landed as ({rows}) select {', '.join(aggregates)} from landed", [files])[0]
    counts["validated_rows"] = result[0]
    for i, (check, *_) in enumerate(checks):
        applies, bad, smallest = result[1 + 3 * i: 4 + 3 * i]
        counts[check] = (applies, bad, list(dict.fromkeys(smallest or []))[:EXAMPLES])
    version = [*spec.key, "updated_at"] if spec.versioned else list(spec.key)
    if set(version) <= set(columns) and len(version) > 1:
        # rows sharing an id and updated_at (GE's compound uniqueness: every copy counts)
        key = " || '/' || ".join(f"coalesce({c}, '')" for c in version)
        copies, examples = b.query(f"""
            with landed as ({rows}),
                 versions as (select {key} as version, count(*) as copies from landed
                              group by all having count(*) > 1)
            select coalesce(sum(copies), 0), min(version, {EXAMPLES}) from versions""", [files])[0]
        counts["valid_unique_version"] = (result[0], int(copies), examples or [])
    return counts


def build(b) -> None:
    manifest = read_manifest(b.spec)
    limit = int(b.threshold("max_landed_rows_validated"))
    ids_mostly, mostly = b.threshold("ids_not_null_mostly"), b.threshold("row_validity_mostly")
    drop_share, same_month_drop = b.threshold("max_row_count_drop_share"), b.threshold("same_month_row_count_drop")
    previous_month = add_months(b.spec.month, -1)
    previous_run, previous = rows_read_by(b, previous_month, "row_count_drop")
    same_month_run, same_month = rows_read_by(b, b.spec.month, "same_month_row_count_drop")

    # the currencies an order or invoice may have: the reporting one and those with a positive rate
    currencies = {b.rules.data["reporting_currency"]}
    fx_files = [v["file"] for v in manifest["tables"]["fx_rates"]["partitions"].values()]
    if fx_files:
        currencies |= {r[0] for r in b.query(
            "select distinct trim(currency) from read_parquet(?) where try_cast(trim(rate_to_reporting) as "
            "decimal(18, 6)) > 0 and nullif(trim(currency), '') is not null", [fx_files])}

    nothing_landed = []
    for name, spec in TABLES.items():
        table = manifest["tables"][name]
        if spec.optional_file and not table["partitions"] and not previous.get(name) and not same_month.get(name):
            continue   # an optional file the source never had: nothing to check
        landed_files = [table["partitions"][p]["file"] for p in table["landed"]]
        checks = row_checks(spec, set(spec.landed_columns), currencies)
        counts = landed_counts(b, spec, table, checks, limit)
        frame = {"rows": table["rows"], "landed_rows": sum(table["partitions"][p]["rows"] for p in table["landed"]),
                 "validated_rows": counts["validated_rows"], "missing_columns": missing_columns(b, spec, landed_files)}
        if frame["landed_rows"] > counts["validated_rows"]:
            b.note(f"{name}: row-level checks on {counts['validated_rows']:,} of the {frame['landed_rows']:,} "
                   f"landed rows (max_landed_rows_validated; unparseable first, then the newest partitions); "
                   f"dbt's row rules check every row")
        evidence = {}
        for check, *_ in [*checks, ("valid_unique_version",)]:
            if check in counts:
                applies, bad, examples = counts[check]
                frame[f"{check}_share"] = round(1 - bad / applies, 6) if applies else 1.0
                evidence[check] = (bad, f"{bad:,} of {applies:,} landed rows fail"
                                        + (f", e.g. {json.dumps(examples, ensure_ascii=False)}" if examples else ""))
        b.frame(name, pd.DataFrame([frame]))

        if landed_files:
            b.expect(name, "columns_present", E.ExpectColumnValuesToBeNull(column="missing_columns"),
                     f"{name}: every landed file has the columns of the source format (the unexpected value "
                     f"names the file and the missing columns)")
        if not spec.optional_file:
            b.expect(name, "not_empty", E.ExpectColumnMaxToBeBetween(column="rows", min_value=1),
                     f"{name}: the month reads rows")
        if previous.get(name):
            minimum = math.ceil(previous[name] * (1 - drop_share))
            b.expect(name, "row_count_drop", E.ExpectColumnMaxToBeBetween(column="rows", min_value=minimum),
                     f"{name}: the month reads at least {minimum} rows: {previous_month:%Y-%m}'s run {previous_run} "
                     f"read {previous[name]}, a drop of more than {drop_share:.0%} means a truncated source")
        if same_month.get(name):
            minimum = math.ceil(same_month[name] * (1 - same_month_drop))
            b.expect(name, "same_month_row_count_drop",
                     E.ExpectColumnMaxToBeBetween(column="rows", min_value=minimum),
                     f"{name}: the month reads at least {minimum} rows: its last successful run {same_month_run} "
                     f"read {same_month[name]}, a drop of more than {same_month_drop:.0%} "
                     f"(same_month_row_count_drop) means a truncated source")
        if not counts["validated_rows"]:
            nothing_landed.append(name)
            continue
        # --- ids, and row-level validity (evidence only: dbt rejects the rows) ---
        described = {check: text for check, _, _, _, text in checks}
        described["valid_unique_version"] = (f"{name}: one row per ({', '.join([*spec.key, 'updated_at'])}); "
                                             f"dbt rejects differing rows as conflicting_versions (exact duplicate "
                                             f"lines also count here, they are harmless)")
        for check, (unexpected, text) in evidence.items():
            share = ids_mostly if check.startswith("id_not_null_") else mostly
            b.expect(name, check, E.ExpectColumnMinToBeBetween(column=f"{check}_share", min_value=share),
                     f"{described[check]}: on at least {share:.0%} of the landed rows",
                     evidence=text, unexpected_count=unexpected)
    if nothing_landed:
        b.note(f"row-level checks not evaluated for {', '.join(nothing_landed)}: the run landed no row of "
               f"{'it' if len(nothing_landed) == 1 else 'them'} (what the month reads passed this gate when landed)")
