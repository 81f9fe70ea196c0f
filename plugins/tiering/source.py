"""The file source: table specs, reading CSV/Parquet, and the as-of extraction.

Every value is read as text, exactly as it stands in the file; typing happens
later (quarantine rules in `tiering.load`, casts in dbt staging). A row is
extracted for month M when its `updated_at` is at or before the end of M, or
when its `updated_at` cannot be parsed (such a row cannot be placed in time:
it is extracted and then quarantined with that reason, so it is never lost).
"""
from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tiering.errors import TieringError


class SourceError(TieringError):
    """A source file is missing or unreadable as a whole (a batch-level failure)."""


def sql_literal(text: str) -> str:
    """A SQL string literal of `text` (quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def record_of(spec: TableSpec) -> str:
    """SQL: a landed row's source columns as the JSON record quarantine.rejected_rows keeps
    (tiering.load); `columns_of_record` reads them back."""
    return "to_json({" + ", ".join(f"{sql_literal(c)}: {c}" for c in spec.columns) + "})"


def columns_of_record(spec: TableSpec, record: str = "record") -> str:
    """SQL: the source columns (text, as landed) from a quarantine record (`record_of`)."""
    return ", ".join(f"json_extract_string({record}, {sql_literal('$.' + c)}) as {c}" for c in spec.columns)


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]                 # what identifies one entity (versions share it)
    required: tuple[str, ...]            # must be present and non-empty
    timestamps: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    months: tuple[str, ...] = ()         # YYYY-MM
    amounts: tuple[str, ...] = ()        # decimals, never negative
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    optional_file: bool = False
    versioned: bool = True               # has updated_at
    free_text: tuple[str, ...] = ()      # typed by people: must hold no e-mail address or phone (tiering.pii)

    def path_in(self, source_dir: Path) -> Path | None:
        for ext in (".csv", ".parquet"):
            candidate = Path(source_dir) / f"{self.name}{ext}"
            if candidate.exists():
                return candidate
        return None


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "customers",
            ("customer_id", "name", "email", "phone", "region", "industry", "customer_kind",
             "parent_customer_id", "created_at", "updated_at"),
            key=("customer_id",),
            required=("customer_id", "customer_kind", "created_at", "updated_at"),
            timestamps=("created_at", "updated_at"),
            enums={"customer_kind": ("individual", "organisation")},
        ),
        TableSpec(
            "orders",
            ("order_id", "customer_id", "ordered_at", "status", "currency", "amount", "cost", "updated_at"),
            key=("order_id",),
            required=("order_id", "customer_id", "ordered_at", "status", "currency", "amount", "updated_at"),
            timestamps=("ordered_at", "updated_at"),
            amounts=("amount", "cost"),
            enums={"status": ("completed", "cancelled", "returned")},
        ),
        TableSpec(
            "invoices",
            ("invoice_id", "order_id", "customer_id", "issued_on", "due_on", "amount_due", "currency", "updated_at"),
            key=("invoice_id",),
            required=("invoice_id", "customer_id", "issued_on", "due_on", "amount_due", "currency", "updated_at"),
            timestamps=("updated_at",),
            dates=("issued_on", "due_on"),
            amounts=("amount_due",),
            optional_file=True,
        ),
        TableSpec(
            "payments",
            ("payment_id", "invoice_id", "paid_at", "amount", "updated_at"),
            key=("payment_id",),
            required=("payment_id", "invoice_id", "paid_at", "amount", "updated_at"),
            timestamps=("paid_at", "updated_at"),
            amounts=("amount",),
            optional_file=True,
        ),
        TableSpec(
            "fx_rates",
            ("currency", "month", "rate_to_reporting"),
            key=("currency", "month"),
            required=("currency", "month", "rate_to_reporting"),
            months=("month",),
            amounts=("rate_to_reporting",),
            optional_file=True,
            versioned=False,
        ),
        # manual tier overrides, approved by the business (an extension of the contract's source)
        TableSpec(
            "tier_overrides",
            ("override_id", "customer_id", "tier", "reason", "approver", "valid_from", "valid_until",
             "updated_at"),
            key=("override_id",),
            required=("override_id", "customer_id", "tier", "reason", "approver", "valid_from", "updated_at"),
            timestamps=("updated_at",),
            months=("valid_from", "valid_until"),
            enums={"tier": ("A", "B", "C", "D")},
            optional_file=True,
            free_text=("reason",),
        ),
    )
}


# reference checks: table -> [(column, referenced table, referenced key column, rule)]
REFERENCES = {
    "orders": [("customer_id", "customers", "customer_id", "unknown_customer")],
    # invoices.order_id is informational: an invoice may be visible before its order arrives
    "invoices": [("customer_id", "customers", "customer_id", "unknown_customer")],
    "payments": [("invoice_id", "invoices", "invoice_id", "unknown_invoice")],
    "tier_overrides": [("customer_id", "customers", "customer_id", "unknown_customer")],
}
LOAD_ORDER = ("fx_rates", "customers", "tier_overrides", "orders", "invoices", "payments")


def depends_on(table: str) -> tuple[str, ...]:
    """The tables whose valid rows decide whether a row of `table` is valid: the ones it refers
    to, and fx_rates for a table with amounts in a currency."""
    refs = tuple(ref for _, ref, _, _ in REFERENCES.get(table, []))
    return refs + (("fx_rates",) if "currency" in TABLES[table].columns and table != "fx_rates" else ())


def read_table(spec: TableSpec, path: Path, encoding: str = "utf-8") -> pa.Table:
    """Read one source file with every column as text, plus `_source_line`. A CSV is decoded
    with `encoding` (the source's declaration: `source_encoding`)."""
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
            first_line = 1
        else:
            names = _csv_header(path, encoding)
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(encoding="utf8" if _is_utf8(encoding) else encoding,
                                               block_size=1 << 24),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names}, strings_can_be_null=False
                ),
            )
            first_line = 2  # line 1 is the header
    except UnicodeDecodeError as exc:   # (a non-UTF-8 header, or pyarrow's transcoding of another encoding)
        raise SourceError(_undecodable(path, encoding)) from exc
    except (OSError, pa.ArrowInvalid) as exc:
        if "utf8" in str(exc).lower().replace("-", ""):
            raise SourceError(_undecodable(path, encoding)) from exc
        raise SourceError(f"{path}: cannot be read ({str(exc).splitlines()[0]}); fix or replace the file") from exc
    missing = [c for c in spec.columns if c not in table.column_names]
    if missing:
        raise SourceError(_delimiter_hint(path, spec, table.column_names) or
                          f"{path}: missing column(s) {', '.join(missing)}; "
                          f"expected columns: {', '.join(spec.columns)}")
    table = table.select(list(spec.columns))
    lines = pa.array(range(first_line, first_line + table.num_rows), type=pa.int64())
    return table.append_column("_source_line", lines)


def _csv_header(path: Path, encoding: str) -> list[str]:
    """The column names of a CSV's first line, read as CSV: quoted names ("customer_id") are names."""
    with open(path, "rb") as fh:
        header = fh.readline().decode("utf-8-sig" if _is_utf8(encoding) else encoding)
    return [c.strip() for c in next(csv.reader([header]), [])]


def _is_utf8(encoding: str) -> bool:
    return encoding.replace("-", "").replace("_", "").lower() == "utf8"


def _delimiter_hint(path: Path, spec: TableSpec, columns: list[str]) -> str | None:
    """A one-line error when the file's single column is the expected names joined by another
    delimiter (a ';' export from a spreadsheet in many locales), else None."""
    if len(columns) != 1:
        return None
    for delimiter in (";", "\t", "|"):
        names = [c.strip().strip('"') for c in columns[0].split(delimiter)]
        if len(names) > 1 and set(names) & set(spec.columns):
            shown = "\\t" if delimiter == "\t" else delimiter
            return (f"{path}: {path.name} seems to be delimited by '{shown}', not ','; "
                    f"export it comma-separated")
    return None


def _undecodable(path: Path, encoding: str) -> str:
    """The error for a CSV that cannot be decoded: the first line that is not `encoding`."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return (f"{path}: line {number} is not valid {encoding} (byte 0x{raw[exc.start]:02x} at column "
                        f"{exc.start + 1}); re-export the file as UTF-8, or declare its encoding in "
                        f"{SOURCE_CONFIG} in the source directory (e.g. 'encoding: {{{path.stem}: cp1252}}')")
    return (f"{path}: cannot be decoded as {encoding}; re-export the file as UTF-8 or declare its encoding "
            f"in {SOURCE_CONFIG}")


# Optional per-source settings, in the source directory. Today one key: the text encoding of the
# CSV files, one for all (`encoding: cp1252`) or per table (`encoding: {orders: cp1252}`); default UTF-8.
SOURCE_CONFIG = "source.yml"


def source_encoding(source_dir: Path, table: str) -> str:
    """The declared encoding of a table's CSV file (source.yml), UTF-8 when none is declared."""
    declared = _source_config(Path(source_dir)).get("encoding") or "utf-8"
    return declared.get(table, "utf-8") if isinstance(declared, dict) else declared


def _source_config(source_dir: Path) -> dict:
    path = source_dir / SOURCE_CONFIG
    if not path.is_file():
        return {}
    import codecs

    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SourceError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or set(data) - {"encoding"}:
        raise SourceError(f"{path}: expected only the key 'encoding' (e.g. 'encoding: cp1252' or "
                          f"'encoding: {{orders: cp1252}}')")
    declared = data.get("encoding") or "utf-8"
    by_table = declared if isinstance(declared, dict) else {"*": declared}
    for table, name in by_table.items():
        if table != "*" and table not in TABLES:
            raise SourceError(f"{path}: 'encoding.{table}': not a source table ({', '.join(TABLES)})")
        try:
            codecs.lookup(str(name))
        except LookupError:
            raise SourceError(f"{path}: unknown encoding {name!r}; use a Python codec name such as "
                              f"utf-8, cp1252 or latin-1") from None
    return data


def check_source_dir(source_dir: Path) -> None:
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise SourceError(f"source directory not found: {source_dir}")
    for spec in TABLES.values():
        if not spec.optional_file and spec.path_in(source_dir) is None:
            raise SourceError(
                f"{source_dir}: required file {spec.name}.csv (or .parquet) is missing; "
                f"see the source format in README.md"
            )
    _source_config(source_dir)   # a bad source.yml fails here, before anything is written


@dataclass(frozen=True)
class Delta:
    """What an incremental landing of one table takes from the source (tiering.increment): the
    rows updated at or after `since` (the base run's cutoff) and before the run's cutoff, the
    rows whose updated_at cannot be parsed (always), and the rows at `carried_lines` (the base
    run's quarantined rows, checked again: a reference may exist by now)."""
    since: str
    carried_lines: tuple[int, ...] = ()
    # a Parquet source: the only lines (first, last; 1-based) that can hold a row updated from
    # `since` on or an unparseable one, by its row groups' times (row_group_times); None: all
    line_ranges: tuple[tuple[int, int], ...] | None = None
    # ... and of them, the lines of the row groups that hold an unparseable updated_at; None: the
    # same as line_ranges
    unparseable_ranges: tuple[tuple[int, int], ...] | None = None
    # (with line_ranges) a query of the carried rows (the source columns as text, `_source_line`,
    # `_source_file`) to take instead of reading their lines from the source, which are spread over
    # every row group: the base run's quarantine records of a byte-identical file (tiering.landing)
    carried_rows: str | None = None


# Strings DuckDB's timestamp and date casts accept although they name no real moment ('infinity'
# reads as 9999-12-31, '-infinity' as 0001-01-01, 'epoch' as 1970-01-01; the others are PostgreSQL's,
# listed in case a DuckDB version accepts them). tiering.load quarantines them (impossible_timestamp);
# an updated_at holding one counts as unparseable, so the row is extracted in every month and
# quarantined, never silently left out of every month ('infinity' is never before a cutoff).
SPECIAL_TIMESTAMPS = ("infinity", "+infinity", "-infinity", "inf", "+inf", "-inf", "epoch", "allballs", "now",
                      "today", "tomorrow", "yesterday")


def is_special_timestamp(column: str) -> str:
    """SQL: the text column holds one of SPECIAL_TIMESTAMPS (any case, surrounding spaces)."""
    return f"lower(trim({column})) in ({', '.join(map(sql_literal, SPECIAL_TIMESTAMPS))})"


UPDATED_TS = f"(case when {is_special_timestamp('updated_at')} then null else try_cast(updated_at as timestamptz) end)"


def _as_of_filter(spec: TableSpec, cutoff: str, delta: Delta | None = None) -> str:
    if spec.versioned:
        where = f"{UPDATED_TS} is null or {UPDATED_TS} < timestamptz '{cutoff}'"
        if delta is not None:
            where = f"({where}) and ({UPDATED_TS} is null or {UPDATED_TS} >= timestamptz '{delta.since}'"
            if delta.carried_lines:
                where += f" or _source_line in (select unnest(${_CARRIED}))"
            where += ")"
        return where
    # fx rates: the months up to and including M (and unparseable months, to quarantine)
    return f"try_strptime(month, '%Y-%m') is null or try_strptime(month, '%Y-%m') < timestamp '{cutoff}'"


_CARRIED = "carried_lines"
# (a Parquet source: its carried rows by row number; DuckDB pushes the semi join into the scan as a
# filter, so only their row groups are read)
_CARRIED_ROWS = f"file_row_number in (select unnest(${_CARRIED}) - 1)"


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        return [r[0] for r in con.execute(
            "select name from parquet_schema(?) where num_children is null or num_children = 0", [str(path)]
        ).fetchall()]
    except duckdb.Error as exc:
        raise SourceError(f"{path}: cannot be read ({str(exc).splitlines()[0]}); fix or replace the file") from exc


def _parquet_rows(spec: TableSpec, path: Path, row_filter: str = "") -> str:
    """SQL: the rows of a Parquet source (columns as text, `_source_line`, `_source_file`);
    `row_filter` is a condition on `file_row_number` (0-based), which DuckDB checks against each
    row group's range before reading it: the row groups outside it are skipped."""
    select = ", ".join(f"cast({c} as varchar) as {c}" for c in spec.columns)
    where = f" where {row_filter}" if row_filter else ""
    return (f"select {select}, file_row_number + 1 as _source_line, {sql_literal(path.name)} as _source_file "
            f"from read_parquet({sql_literal(str(path))}, file_row_number = true){where}")


@contextmanager
def source_rows(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path):
    """A SQL query of every row of one source file: the source columns as text, `_source_line`
    and `_source_file`, in file order.

    A Parquet source streams through DuckDB (bounded memory: a 50-million-row file never sits in
    memory); a CSV source is read with pyarrow, which numbers its lines exactly as a text editor
    shows them, and registered for the time of the `with` block."""
    name = sql_literal(path.name)
    if path.suffix == ".parquet":
        present = _parquet_columns(con, path)
        missing = [c for c in spec.columns if c not in present]
        if missing:
            raise SourceError(
                f"{path}: missing column(s) {', '.join(missing)}; expected columns: {', '.join(spec.columns)}"
            )
        yield _parquet_rows(spec, path)   # the line is the file's row position + 1
        return
    con.register("source_file_rows", read_table(spec, path, source_encoding(path.parent, spec.name)))
    try:
        yield f"select *, {name} as _source_file from source_file_rows"
    finally:
        con.unregister("source_file_rows")


@contextmanager
def _rows_of(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path, rows: str | None):
    """`rows` when the caller holds the file open (source_rows), else source_rows for this call:
    a CSV is then read once per table, not once per query."""
    if rows is not None:
        yield rows
        return
    with source_rows(con, spec, path) as opened:
        yield opened


def _run(con: duckdb.DuckDBPyConnection, path: Path, sql: str, params: dict | None = None):
    try:
        return con.execute(sql, params or {}).fetchall()
    except duckdb.Error as exc:
        raise SourceError(f"{path}: cannot be read ({str(exc).splitlines()[0]}); fix or replace the file") from exc


# zstd at its fastest level: 15% faster to write than the default level 3 and no larger here
# (one month's changed orders at 1M customers: 3M rows of text in 46 MB)
LANDED_PARQUET = "format parquet, compression zstd, compression_level 1"


def extract_as_of_to(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path, cutoff: str,
                     out: Path, delta: Delta | None = None, rows: str | None = None) -> int:
    """Write the rows of one source file visible before `cutoff` (the month end; see the module
    docstring), or of them only the `delta` ones, to the Parquet file `out`: the source columns
    as text, `_source_line` and `_source_file`, in file order (read, filter and write in one
    pass). Returns the row count."""
    params = {_CARRIED: list(delta.carried_lines)} if delta is not None and delta.carried_lines else None
    if delta is not None and delta.line_ranges is not None and path.suffix == ".parquet":
        # only the row groups that can hold the delta's rows, and the carried rows (wherever they
        # are, or from the base run's quarantine records)
        query = f"{_delta_rows(spec, path, cutoff, delta)} order by _source_line"
        return _run(con, path, f"copy ({query}) to {sql_literal(str(out))} ({LANDED_PARQUET})",
                    params if f"${_CARRIED}" in query else None)[0][0]
    where = _as_of_filter(spec, cutoff, delta)
    with _rows_of(con, spec, path, rows) as source:
        # COPY keeps a Parquet scan's file order; the CSV's arrow rows are put back in line order
        order = "" if path.suffix == ".parquet" else " order by _source_line"
        query = f"select * from ({source}) where {where}{order}"
        return _run(con, path, f"copy ({query}) to {sql_literal(str(out))} ({LANDED_PARQUET})",
                    params)[0][0]


def _in_lines(ranges: tuple[tuple[int, int], ...]) -> str:
    """SQL: a Parquet row (`file_row_number`, 0-based) is in one of the line ranges (1-based)."""
    return "(" + (" or ".join(f"file_row_number between {first - 1} and {last - 1}" for first, last in ranges)
                  or "false") + ")"


def _delta_rows(spec: TableSpec, path: Path, cutoff: str, delta: Delta) -> str:
    """SQL: the rows of a Parquet source that `_as_of_filter` keeps for `delta`, read from the
    row groups in `delta.line_ranges` and the carried rows wherever they are, as three disjoint
    parts, each with a filter DuckDB checks in the scan (the other columns of a row are read
    only when it passes): the rows updated from `since` on and before the cutoff (in the
    ranges), the unparseable ones (in the row groups that hold one) and the carried rows updated
    before `since` (by their lines, or from `delta.carried_rows`). The `or` of the single filter
    would be checked after reading and casting every column of every row (measurements:
    bench/RESULTS.md)."""
    parts = [f"select * from ({_parquet_rows(spec, path, _in_lines(delta.line_ranges))}) "
             f"where {UPDATED_TS} >= timestamptz '{delta.since}' and {UPDATED_TS} < timestamptz '{cutoff}'"]
    unparseable = delta.line_ranges if delta.unparseable_ranges is None else delta.unparseable_ranges
    if unparseable:
        parts.append(f"select * from ({_parquet_rows(spec, path, _in_lines(unparseable))}) where {UPDATED_TS} is null")
    if delta.carried_lines:
        carried = delta.carried_rows or _parquet_rows(spec, path, _CARRIED_ROWS)
        parts.append(f"select * from ({carried}) "
                     f"where {UPDATED_TS} < timestamptz '{delta.since}' and {UPDATED_TS} < timestamptz '{cutoff}'")
    return " union all ".join(parts)


def row_group_times(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path) -> list[list]:
    """[[first line, rows, earliest, latest, unparseable], ...] for each row group of a Parquet
    source of a versioned table: the earliest and latest updated_at of its rows (microseconds
    since the epoch, UTC; None when none parses) and how many cannot be parsed. A row group whose
    latest updated_at is before a delta's `since` and which has no unparseable row holds no row of
    the delta but carried ones (`delta_line_ranges`). One read of the updated_at column, the row
    groups shared among the connection's threads; updated_at is read as text and parsed as the
    landing parses it, whatever its Parquet type."""
    groups = _run(con, path, "select row_group_id, any_value(row_group_num_rows) from parquet_metadata($path) "
                             "group by row_group_id order by row_group_id", {"path": str(path)})
    starts, first = [], 1
    for _, count in groups:
        starts.append((first, count))
        first += count

    def times(first_line: int, count: int) -> list:
        cursor = con.cursor()
        try:
            low, high, bad = _run(cursor, path, f"""
                select epoch_us(min(ts)), epoch_us(max(ts)), count(*) filter (where ts is null)
                from (select {UPDATED_TS} as ts
                      from (select cast(updated_at as varchar) as updated_at
                            from read_parquet($path, file_row_number = true)
                            where file_row_number between $first and $last))""",
                {"path": str(path), "first": first_line - 1, "last": first_line + count - 2})[0]
        finally:
            cursor.close()
        return [first_line, count, low, high, bad]

    threads = int(con.execute("select current_setting('threads')").fetchone()[0])
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:   # one row group is one thread's work
        return list(pool.map(lambda group: times(*group), starts))


def delta_line_ranges(groups: list[list], since_us: int | None) -> tuple[tuple[int, int], ...]:
    """The line ranges (merged) of the row groups that may hold a row updated at or after
    `since_us` (microseconds since the epoch) or an unparseable one; with `since_us` None, of
    those that hold an unparseable one."""
    ranges: list[tuple[int, int]] = []
    for first, count, _, latest, bad in groups:
        if bad or (since_us is not None and (latest is None or latest >= since_us)):
            if ranges and ranges[-1][1] == first - 1:
                ranges[-1] = (ranges[-1][0], first + count - 1)
            else:
                ranges.append((first, first + count - 1))
    return tuple(ranges)


def _visible_from(spec: TableSpec) -> str:
    """SQL: the moment from which a row is visible (updated_at; an fx rate: its month)."""
    return UPDATED_TS if spec.versioned else "cast(try_strptime(month, '%Y-%m') as timestamptz)"


def fingerprints(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path, cutoffs: list[str],
                 rows: str | None = None) -> dict:
    """{cutoff: {"rows": n, "hash": text}, "unparseable": n} of one source file: for each cutoff,
    the number of rows visible before it (updated_at, or an fx rate's month, before the cutoff)
    and the sum of a hash of each such row's values and line number; and the number of rows
    whose updated_at (month) cannot be parsed. Equal fingerprints at a cutoff mean that the rows
    before it are (but for a 2^-64 chance) the same rows at the same lines: what an incremental
    landing relies on (tiering.increment). One scan of the file for all cutoffs."""
    row_hash = "hash(" + ", ".join([*spec.columns, "_source_line"]) + ")"
    aggregates = ", ".join(
        f"count(*) filter (where ts < timestamptz '{c}'), "
        f"coalesce(sum({row_hash}) filter (where ts < timestamptz '{c}'), 0)::varchar"
        for c in cutoffs)
    with _rows_of(con, spec, path, rows) as source:
        values = _run(con, path, f"select {aggregates}, count(*) filter (where ts is null) "
                                 f"from (select *, {_visible_from(spec)} as ts from ({source}))")[0]
    result: dict = {c: {"rows": values[2 * i], "hash": values[2 * i + 1]} for i, c in enumerate(cutoffs)}
    result["unparseable"] = values[-1]
    return result


def fingerprint_of_landing(con: duckdb.DuckDBPyConnection, spec: TableSpec, landed: Path, cutoff: str,
                           base_fingerprint: dict | None) -> dict:
    """The source's fingerprints at `cutoff` (as `fingerprints` gives them) from a landed file
    instead of the source: a full landing holds every row visible before the cutoff, and every
    unparseable row; a delta on a base whose source file is the same holds, besides those, the
    rows visible from the base's cutoff on, so the fingerprint is the base's plus theirs (counts
    and hash sums add up). The landed file keeps the source's text values and line numbers, so
    the hashes are the ones a scan of the source gives (tests/unit/test_increment.py)."""
    rows = f"select * from read_parquet({sql_literal(str(landed))})"
    if base_fingerprint is None:
        return fingerprints(con, spec, landed, [cutoff], rows)
    since = base_fingerprint["cutoff"]
    found = fingerprints(con, spec, landed, [cutoff, since], rows)
    # the landed rows before the base's cutoff are the carried ones, counted in the base's fingerprint
    new = {"rows": found[cutoff]["rows"] - found[since]["rows"],
           "hash": int(found[cutoff]["hash"]) - int(found[since]["hash"])}
    return {cutoff: {"rows": base_fingerprint["rows"] + new["rows"],
                     "hash": str(int(base_fingerprint["hash"]) + new["hash"])},
            "unparseable": found["unparseable"]}


def carried_collisions(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path, delta: Delta,
                       rows: str | None = None) -> int:
    """How many of the rows visible before `delta.since` that are not carried share their id and
    updated_at with a carried row. Such a pair is two versions at the same moment: when the
    carried row becomes valid, the conflicting-versions rule must see both, so the table is
    landed in full (tiering.increment). Only the rows with a carried row's id have their
    updated_at parsed (a Parquet source's carried rows are read by row number)."""
    if not delta.carried_lines:
        return 0
    key = ", ".join(spec.key)
    with _rows_of(con, spec, path, rows) as source:
        carried = (_parquet_rows(spec, path, _CARRIED_ROWS) if path.suffix == ".parquet" else
                   f"select * from ({source}) where _source_line in (select unnest(${_CARRIED}))")
        # both CTEs materialized and joined: with `(id, updated_at) in (select ...)` DuckDB parsed
        # updated_at of every source row (measured in bench/RESULTS.md)
        same = " and ".join(f"same_id.{k} = carried.{k}" for k in spec.key)
        return _run(con, path, f"""
            with carried as materialized (
                select {key}, _source_line, {UPDATED_TS} as ts from ({carried})
            ),
            same_id as materialized (
                select {key}, _source_line, {UPDATED_TS} as ts from ({source})
                where ({key}) in (select ({key}) from carried)
            )
            select count(*) from same_id inner join carried on {same} and same_id.ts = carried.ts
            where same_id.ts < timestamptz '{delta.since}'
              and same_id._source_line not in (select _source_line from carried)
        """, {_CARRIED: list(delta.carried_lines)})[0][0]
