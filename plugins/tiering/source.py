"""The file source: table specs and reading a source file as text rows.

Every value is read as text, exactly as it stands in the file, with its line number; typing and
the row rules happen in dbt (models/staging/stg_landing__*). tiering.landing puts each row in
the change-log partition of its `updated_at` month (fx_rates: of its `month`).
"""
from __future__ import annotations

import csv
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
    optional_columns: tuple[str, ...] = ()   # may be absent from the file: read as empty
    personal: tuple[str, ...] = ()       # personal data: landed apart (tiering.landing), erasable (tiering forget)
    partition_column: str = "updated_at"  # the change log's partition: this column's month

    @property
    def landed_columns(self) -> tuple[str, ...]:
        """The columns of the table's change log (the personal ones land apart)."""
        return tuple(c for c in self.columns if c not in self.personal)

    @property
    def log_columns(self) -> tuple[str, ...]:
        """The columns of the table's landed files: the landed columns as text, where each row came
        from, its partition, and `_hash` (a 64-bit hash of its landed values: the partition's
        fingerprint sums it, the staging models tell conflicting versions apart by it)."""
        return (*self.landed_columns, "_source_file", "_source_line", "landing_partition", "_hash")

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
            personal=("name", "email", "phone"),
        ),
        TableSpec(
            "orders",
            ("order_id", "customer_id", "ordered_at", "status", "currency", "amount", "cost", "updated_at",
             "original_order_id"),
            key=("order_id",),
            required=("order_id", "customer_id", "ordered_at", "status", "currency", "amount", "updated_at"),
            timestamps=("ordered_at", "updated_at"),
            amounts=("amount", "cost"),     # (a credit_note's amount is zero or negative)
            enums={"status": ("completed", "cancelled", "returned", "credit_note")},
            optional_columns=("original_order_id",),
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
            partition_column="month",
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


# the tables in the order their rows are checked (a table's references come before it)
LOAD_ORDER = ("fx_rates", "customers", "tier_overrides", "orders", "invoices", "payments")


def read_table(spec: TableSpec, path: Path, encoding: str = "utf-8") -> pa.Table:
    """Read one source file with every column as text, plus `_source_line`. A CSV is decoded
    with `encoding` (the source's declaration: `source_encoding`)."""
    names: list[str] = []
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
        # (a ';'-delimited row with a decimal comma has two ','-fields: the header says why)
        raise SourceError(_delimiter_hint(path, spec, names) or
                          f"{path}: cannot be read ({str(exc).splitlines()[0]}); fix or replace the file") from exc
    missing = [c for c in spec.columns if c not in table.column_names and c not in spec.optional_columns]
    if missing:
        raise SourceError(_delimiter_hint(path, spec, table.column_names) or
                          f"{path}: missing column(s) {', '.join(missing)}; "
                          f"expected columns: {', '.join(spec.columns)}")
    for column in spec.optional_columns:
        if column not in table.column_names:
            table = table.append_column(column, pa.nulls(table.num_rows, pa.string()))
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


# Strings DuckDB's timestamp and date casts accept although they name no real moment ('infinity'
# reads as 9999-12-31, '-infinity' as 0001-01-01, 'epoch' as 1970-01-01; the others are PostgreSQL's,
# listed in case a DuckDB version accepts them). The row rules reject them (impossible_timestamp);
# an updated_at holding one cannot be placed in a month: the row lands in the partition
# `unparseable` (tiering.landing), rejected in every month, never silently lost.
SPECIAL_TIMESTAMPS = ("infinity", "+infinity", "-infinity", "inf", "+inf", "-inf", "epoch", "allballs", "now",
                      "today", "tomorrow", "yesterday")


def is_special_timestamp(column: str) -> str:
    """SQL: the text column holds one of SPECIAL_TIMESTAMPS (any case, surrounding spaces)."""
    return f"lower(trim({column})) in ({', '.join(map(sql_literal, SPECIAL_TIMESTAMPS))})"


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        return [r[0] for r in con.execute(
            "select name from parquet_schema(?) where num_children is null or num_children = 0", [str(path)]
        ).fetchall()]
    except duckdb.Error as exc:
        raise SourceError(f"{path}: cannot be read ({str(exc).splitlines()[0]}); fix or replace the file") from exc




def partition_of(spec: TableSpec) -> str:
    """SQL: the change-log partition of a source row (text columns): the UTC month (YYYY-MM) of its
    updated_at (fx_rates: its month), or 'unparseable' when that cannot be read. A year DuckDB
    reads but that has not four digits (12024, or BC: '-0044') is unparseable too: partitions
    compare as text ('12024-01' < '2024-01'), so it would be read by every month."""
    column = spec.partition_column
    if column == "month":
        month = (f"(case when regexp_full_match(trim({column}), '\\d{{4}}-\\d{{2}}') "
                 f"then try_strptime(trim({column}), '%Y-%m') end)")
    else:
        month = f"(case when {is_special_timestamp(column)} then null else try_cast({column} as timestamptz) end)"
    text = f"strftime({month}, '%Y-%m')"
    checked = f"coalesce(case when regexp_full_match({text}, '\\d{{4}}-\\d{{2}}') then {text} end, '{UNPARSEABLE}')"
    if column == "month":
        return checked
    # the usual shape first, an ISO 8601 timestamp without offset or in UTC ('Z'): its month is read
    # by the plain timestamp cast (the session is UTC), cheaper than the general timestamptz path
    usual = f"regexp_full_match({column}, '{UTC_ISO_TIMESTAMP}')"
    return (f"case when {usual} then coalesce(strftime(try_cast({column} as timestamp), '%Y-%m'), '{UNPARSEABLE}') "
            f"else {checked} end")


# YYYY-MM-DD, optionally with a time (T or a space, HH:MM[:SS[.fraction]]) and 'Z'
UTC_ISO_TIMESTAMP = "\\d{4}-\\d{2}-\\d{2}([T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?Z?)?"


UNPARSEABLE = "unparseable"

# the SQL types of the landed files' columns that are not text
LOG_TYPES = {"_source_line": "bigint", "_hash": "ubigint"}


@contextmanager
def source_rows(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path):
    """A SQL query of every row of one source file: the source columns as text (an optional column
    the file lacks as NULL), `_source_line` and `_source_file`.

    A Parquet source streams through DuckDB (bounded memory: a 50-million-row file never sits in
    memory); its line is the row's position + 1. A CSV source is read with pyarrow (encodings,
    quoted headers, line numbers exactly as a text editor shows them) and registered for the
    time of the `with` block."""
    name = sql_literal(path.name)
    if path.suffix == ".parquet":
        present = _parquet_columns(con, path)
        missing = [c for c in spec.columns if c not in present and c not in spec.optional_columns]
        if missing:
            raise SourceError(
                f"{path}: missing column(s) {', '.join(missing)}; expected columns: {', '.join(spec.columns)}"
            )
        select = ", ".join(f"cast({c} as varchar) as {c}" if c in present else f"cast(null as varchar) as {c}"
                           for c in spec.columns)
        yield (f"select {select}, file_row_number + 1 as _source_line, {name} as _source_file "
               f"from read_parquet({sql_literal(str(path))}, file_row_number = true)")
        return
    con.register("source_file_rows", read_table(spec, path, source_encoding(path.parent, spec.name)))
    try:
        yield f"select *, {name} as _source_file from source_file_rows"
    finally:
        con.unregister("source_file_rows")


def run_sql(con: duckdb.DuckDBPyConnection, path: Path, sql: str):
    """Run a query over a source file; a file DuckDB cannot read is a one-line SourceError."""
    try:
        return con.execute(sql).fetchall()
    except duckdb.Error as exc:
        raise SourceError(f"{path}: cannot be read ({str(exc).splitlines()[0]}); fix or replace the file") from exc
