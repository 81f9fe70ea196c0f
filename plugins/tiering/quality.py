"""Data quality gates: Great Expectations suites run on pandas DataFrames read from DuckDB.

    run_gate("landed" | "staging" | "marts", spec) -> summary dict

The suites are code: `expectations/<gate>.py` (under `tiering.settings.EXPECTATIONS_DIR`)
defines `build(b: SuiteBuilder)`, which reads what it needs from the warehouse (or the
landed Parquet files) into pandas DataFrames ("datasets") and declares GE expectations on
them, each under a check id "<gate>.<dataset>.<check>". `expectations/gates.yml` holds each
check's severity (error fails the gate, warn is only logged and recorded) and the thresholds.

Every expectation result is written to `audit.dq_results` (delete + insert per run and gate, so
a retried gate replaces its evidence), and GE Data Docs of the run are built into
`<warehouse dir>/gx_docs/<run_id>/index.html`. A failing error-severity expectation raises
QualityGateError naming the gate, the month and each failure with its observed value.

GE is validated on pandas only (its SQL datasource gave wrong results over duckdb-engine),
from an ephemeral context, without analytics and without progress bars, one Checkpoint per
dataset; a check's severity is GE's own field (error -> critical, warn -> warning). The warehouse is
opened twice per gate, briefly: once to read the datasets, once to write the results.
docs/quality.md says which tool owns which check.
"""
from __future__ import annotations

import fnmatch
import functools
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator

from tiering.errors import QualityGateError, TieringError
from tiering.rules import load_rules
from tiering.runspec import RunSpec, parse_month
from tiering.settings import EXPECTATIONS_DIR
from tiering.validation import PATTERN_HELP, STRICT, validate
from tiering.warehouse import connect, ensure_schema, transaction

GATES = ("landed", "staging", "marts")
# gates.yml's severities as Great Expectations' FailureSeverity values, and back
GX_SEVERITY = {"error": "critical", "warn": "warning"}
SEVERITY_OF_GX = {gx_value: ours for ours, gx_value in GX_SEVERITY.items()}
CONFIG_FILE = "gates.yml"
RESULT_FORMAT = "BASIC"          # counts plus up to 20 unexpected values per expectation
MAX_OBSERVED_CHARS = 600

DQ_RESULTS_DDL = """
    create table if not exists audit.dq_results (
        run_id varchar not null,
        month date not null,
        gate varchar not null,
        expectation varchar not null,   -- '<check id>: <expectation type>(<kwargs>)'
        severity varchar not null,      -- error | warn
        success boolean not null,
        observed_value varchar,         -- what GE observed, as text
        unexpected_count bigint,        -- rows breaking a row-level expectation (null otherwise)
        evaluated_at timestamp not null
    )"""
DQ_COLUMNS = ("run_id", "month", "gate", "expectation", "severity", "success", "observed_value",
              "unexpected_count", "evaluated_at")

log = logging.getLogger("tiering.quality")


class QualityConfigError(TieringError, ValueError):
    """expectations/gates.yml or a suite module is invalid."""


# --- configuration -------------------------------------------------------------

Share = Annotated[float, Field(ge=0, le=1)]


class Thresholds(BaseModel):
    """`thresholds:` of gates.yml; a threshold not given keeps its default."""
    model_config = STRICT
    max_row_count_drop_share: Share = Field(
        0.5, description="landed: the rows a month reads may drop at most this share against the previous month's run")
    same_month_row_count_drop: Share = Field(
        0.10, description="landed: a rerun of the same month may drop at most this share of the rows of its "
                          "latest successful run")
    row_validity_mostly: Share = Field(0.99, description="landed: row-level valid_* checks pass at this share")
    ids_not_null_mostly: Share = Field(0.99, description="landed: id columns filled in at this share")
    max_quarantined_share: Share = Field(0.2, description="staging: at most this share of the rows read quarantined")
    revenue_share_tolerance: Annotated[float, Field(ge=0)] = Field(
        1e-9, description="marts: revenue shares sum to 1 within this")
    max_landed_rows_validated: Annotated[float, Field(ge=0)] = Field(
        1_000_000, description="landed: the row-level checks scan at most this many landed rows per table")


class GatesFile(BaseModel):
    """expectations/gates.yml: severities, thresholds, PII tokens, Data Docs (docs/quality.md)."""
    model_config = STRICT
    severities: dict[str, Literal["error", "warn"]] = Field(
        default_factory=lambda: {"*": "error"},
        description="check-id patterns (fnmatch) -> error | warn; the last matching pattern wins")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    pii_column_tokens: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]] = Field(
        default_factory=lambda: ["name", "email", "phone"], min_length=1,
        description="a marts column whose name holds one of these words is personal data")
    data_docs: bool = Field(True, description="build Great Expectations Data Docs per run")

    @field_validator("severities", "thresholds", mode="before")
    @classmethod
    def _empty_is_default(cls, value, info):
        """An empty `severities:` or `thresholds:` (null in YAML) means the defaults."""
        if value is None or value == {}:
            return {"*": "error"} if info.field_name == "severities" else {}
        return value


PATTERN_HELP[r"^[A-Za-z0-9_]+$"] = "a word (letters, digits, '_')"
DEFAULT_THRESHOLDS = Thresholds().model_dump()


@dataclass(frozen=True)
class GateConfig:
    severities: tuple[tuple[str, str], ...] = (("*", "error"),)   # (pattern, severity), last match wins
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    pii_column_tokens: tuple[str, ...] = ("name", "email", "phone")
    data_docs: bool = True

    def severity(self, check_id: str) -> str:
        """Severity of a check: the last matching pattern of `severities`; error if none matches."""
        found = "error"
        for pattern, severity in self.severities:
            if fnmatch.fnmatchcase(check_id, pattern):
                found = severity
        return found

    def threshold(self, key: str) -> float:
        if key not in self.thresholds:
            raise QualityConfigError(f"unknown threshold '{key}'; known: {', '.join(sorted(self.thresholds))}")
        return self.thresholds[key]


def parse_gate_config(data: Any, where: str = CONFIG_FILE) -> GateConfig:
    """Validate the content of gates.yml (GatesFile); one line per problem, naming the key."""
    model, found = validate(GatesFile, data)
    if found:
        raise QualityConfigError("\n".join(f"{where}: {problem}" for problem in found))
    return GateConfig(severities=tuple(model.severities.items()),
                      thresholds={k: float(v) for k, v in model.thresholds.model_dump().items()},
                      pii_column_tokens=tuple(t.lower() for t in model.pii_column_tokens),
                      data_docs=model.data_docs)


def load_gate_config(path: Path | None = None) -> GateConfig:
    # $TIERING_GATES: another gates file (a relaxed threshold for one run, a test)
    path = Path(path or os.environ.get("TIERING_GATES") or EXPECTATIONS_DIR / CONFIG_FILE)
    if not path.is_file():
        raise QualityConfigError(f"quality gate configuration not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise QualityConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_gate_config(data, str(path))


# --- Great Expectations, quietly -------------------------------------------------

def import_gx():
    """Import great_expectations without analytics, network calls, INFO logs or progress bars."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.execution_engine import pandas_execution_engine
    # GE fingerprints every in-memory DataFrame (an md5 over all values, ~0.7 s per 500k rows)
    # for optional batch metadata, and already skips it above 1 GB. Nothing here reads it.
    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0
    return gx


def load_suite(gate: str, directory: Path | None = None):
    """The suite module expectations/<gate>.py (loaded by path: it is configuration, not a package)."""
    if gate not in GATES:
        raise ValueError(f"unknown quality gate {gate!r}; expected one of {', '.join(GATES)}")
    import_gx()
    path = Path(directory or EXPECTATIONS_DIR) / f"{gate}.py"
    if not path.is_file():
        raise QualityConfigError(f"suite of gate '{gate}' not found: {path}")
    name = f"tiering_expectations_{gate}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "build", None)):
        raise QualityConfigError(f"{path}: must define build(b) (see tiering.quality.SuiteBuilder)")
    return module


# --- building a gate's suites ----------------------------------------------------------

@dataclass
class Check:
    check_id: str           # "<gate>.<dataset>.<check>"
    dataset: str
    expectation: Any        # a great_expectations Expectation (meta carries check_id and severity)
    severity: str
    frame: str = ""         # the DataFrame it is validated on, when not the dataset's own
                            # (e.g. a one-row frame of the dataset's counts computed in DuckDB)

    @property
    def validated_on(self) -> str:
        return self.frame or self.dataset


def _params(params: list | tuple | dict) -> list | dict:
    return params if isinstance(params, dict) else list(params)


class SuiteBuilder:
    """What a suite module's build(b) works with: data in, expectations out.

    b.dataset(name, sql, params)  read a DataFrame (DuckDB -> pandas) to validate
    b.frame(name, df)             register a DataFrame built otherwise
    b.expect(dataset, check, expectation, description=None, frame=None)
    b.query / b.scalar / b.table_exists / b.columns   facts for building the expectations
    b.spec, b.rules, b.config, b.threshold(key), b.note(text)
    b.marts                       the schema of the marts to validate (marts_pending during a run)
    """

    def __init__(self, gate: str, spec: RunSpec, config: GateConfig, con):
        self.gate = gate
        self.spec = spec
        self.config = config
        self.con = con
        self.datasets: dict[str, Any] = {}
        self.checks: list[Check] = []
        self.notes: list[str] = []
        self._rules = None
        # where the marts gate reads the marts: the rows a run built apart, before they are swapped
        # into `marts` (tiering.marts_build), else `marts`
        self.marts = "marts"
        if gate == "marts" and con.execute(
                "select count(*) from information_schema.schemata where schema_name = 'marts_pending' "
                "and catalog_name = current_database()").fetchall()[0][0]:
            self.marts = "marts_pending"

    @property
    def rules(self):
        if self._rules is None:
            self._rules = load_rules(self.spec.rules_path)
        return self._rules

    def threshold(self, key: str) -> float:
        return self.config.threshold(key)

    def query(self, sql: str, params: list | tuple | dict = ()) -> list[tuple]:
        return self.con.execute(sql, _params(params)).fetchall()

    def scalar(self, sql: str, params: list | tuple | dict = ()) -> Any:
        rows = self.con.execute(sql, _params(params)).fetchall()
        return rows[0][0] if rows else None

    def columns(self, schema: str, table: str) -> list[str]:
        return [r[0] for r in self.query(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
            "and table_catalog = current_database() order by ordinal_position", [schema, table])]

    def table_exists(self, schema: str, table: str) -> bool:
        return bool(self.columns(schema, table))

    def dataset(self, name: str, sql: str, params: list | tuple | dict = ()):
        """Run a query and register its result as a pandas DataFrame (through Arrow: text stays
        Arrow-backed, about three times faster than .df() on large extracts)."""
        return self.frame(name, self.con.sql(sql, params=_params(params) or None).to_arrow_table().to_pandas())

    def frame(self, name: str, df):
        if name in self.datasets:
            raise QualityConfigError(f"gate {self.gate}: dataset '{name}' defined twice")
        self.datasets[name] = df
        return df

    def expect(self, dataset: str, check: str, expectation, description: str | None = None,
               frame: str | None = None, evidence: str | None = None, unexpected_count: int | None = None) -> Check:
        """Declare check "<gate>.<dataset>.<check>", validated on the dataset's DataFrame or on
        `frame` (another registered DataFrame, e.g. the dataset's counts: the check keeps its id).
        A check on a share computed in DuckDB passes its row counts along: `evidence` (a short text
        added to the observed value, e.g. "3 of 52,000 landed rows fail, e.g. [...]") and
        `unexpected_count` (recorded in audit.dq_results as for a row-level expectation)."""
        for name in (dataset, frame):
            if name is not None and name not in self.datasets:
                raise QualityConfigError(f"gate {self.gate}: check '{check}' on unknown dataset '{name}'")
        check_id = f"{self.gate}.{dataset}.{check}"
        if any(c.check_id == check_id for c in self.checks):
            raise QualityConfigError(f"gate {self.gate}: check id '{check_id}' defined twice")
        severity = self.config.severity(check_id)
        # GE's own severity field (error -> critical, warn -> warning); the check id rides in meta
        expectation.severity = GX_SEVERITY[severity]
        expectation.meta = {**(expectation.meta or {}), "check_id": check_id}
        if evidence is not None:
            expectation.meta["evidence"] = evidence
        if unexpected_count is not None:
            expectation.meta["unexpected_count"] = int(unexpected_count)
        if description:
            expectation.description = description
        entry = Check(check_id, dataset, expectation, severity, frame or "")
        self.checks.append(entry)
        return entry

    def note(self, text: str) -> None:
        """Say why a check was not evaluated (logged with the gate's summary)."""
        self.notes.append(text)


# --- evaluating and recording ----------------------------------------------------------------

def docs_dir(spec: RunSpec) -> Path:
    """Where the run's GE Data Docs go: <warehouse dir>/gx_docs/<run_id>/ (git-ignored)."""
    return Path(spec.warehouse).resolve().parent / "gx_docs" / spec.run_id


def _context(gx, docs: Path | None):
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    stores = json.loads(json.dumps(defaults.stores))
    sites: dict = {}
    if docs is not None:
        # Suites and results of every gate of the run are kept beside its docs, so that each
        # gate (its own process under Airflow) rebuilds one site holding all gates so far.
        for store_name, sub in ((defaults.expectations_store_name, "expectations"),
                                (defaults.validation_results_store_name, "validations")):
            stores[store_name]["store_backend"] = {"class_name": "TupleFilesystemStoreBackend",
                                                   "base_directory": str(docs / "_store" / sub)}
        sites = {DOCS_SITE: {"class_name": "SiteBuilder", "show_how_to_buttons": False,
                         "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                           "base_directory": str(docs)},
                         "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}}
    config = DataContextConfig(store_backend_defaults=defaults, stores=stores, data_docs_sites=sites,
                               analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False))
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


DOCS_SITE = "run"   # the one Data Docs site of a run: <warehouse dir>/gx_docs/<run_id>/


def _run_name(spec: RunSpec, gate: str) -> str:
    return f"{spec.run_id}-{gate}"


def _validate(gx, gate: str, spec: RunSpec, builder: SuiteBuilder, context, data_docs: bool) -> list:
    """Run each dataset's suite through a Checkpoint; return the ExpectationValidationResults of
    every check. A Checkpoint per dataset: a DataFrame asset takes its rows as the batch parameter
    `dataframe`, which a Checkpoint passes to all its validation definitions alike. The gate's last
    Checkpoint carries the Data Docs action, which renders the whole gate (gate_docs_action).

    Each Checkpoint is added to the context by its own run (Checkpoint.run adds a Checkpoint whose
    validation definitions are added) rather than by `context.checkpoints.add` first: that add
    reads the Checkpoint back from the store, and the run then compares it with that stored copy,
    which checks the freshness of its validation definition and suite twice more; this was most of
    what the Checkpoints cost over validating the definitions directly."""
    from great_expectations.core.run_identifier import RunIdentifier

    source = context.data_sources.add_pandas(f"{gate}")
    run_identifier = RunIdentifier(run_name=_run_name(spec, gate), run_time=datetime.now(UTC))
    datasets = [(dataset, df, [c for c in builder.checks if c.validated_on == dataset])
                for dataset, df in builder.datasets.items()]
    datasets = [entry for entry in datasets if entry[2]]
    results = []
    for i, (dataset, df, checks) in enumerate(datasets):
        batch_definition = source.add_dataframe_asset(dataset).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add_or_update(gx.ExpectationSuite(
            name=f"{gate}.{dataset}", expectations=[c.expectation for c in checks],
            meta={"gate": gate, "month": spec.month_text}))
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{gate}.{dataset}", data=batch_definition, suite=suite))
        last = i == len(datasets) - 1
        checkpoint = gx.Checkpoint(
            name=f"{gate}.{dataset}", validation_definitions=[validation], result_format=RESULT_FORMAT,
            actions=[gate_docs_action()] if data_docs and last else [])
        outcome = checkpoint.run(batch_parameters={"dataframe": df}, run_id=run_identifier)
        for validation_result in outcome.run_results.values():
            results.extend(validation_result.results)
    return results


@functools.cache
def _gate_docs_action_class():
    """GE's UpdateDataDocsAction for the run's site, rendering every validation result of the
    checkpoint run's name (the whole gate) in one build. The stock action renders each result of
    its own Checkpoint with a rebuild of the site index each time: with a Checkpoint per dataset
    that cost 1-1.5 s per dataset (a gate has up to 9), against well under a second for one build.
    (A custom action is GE's documented extension point; defined once per process, as GE registers
    action types by name.)"""
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    class UpdateGateDataDocsAction(UpdateDataDocsAction):
        type: Literal["update_gate_data_docs"] = "update_gate_data_docs"

        def run(self, checkpoint_result, action_context=None) -> dict:
            context = self._resolve_context().context
            run_name = checkpoint_result.run_id.run_name
            results = [key for key in context.validation_results_store.list_keys()
                       if getattr(key.run_id, "run_name", None) == run_name]
            suites = {ExpectationSuiteIdentifier(name=key.expectation_suite_identifier.name) for key in results}
            self._build_data_docs(site_names=self.site_names, resource_identifiers=[*results, *suites])
            return {}

    return UpdateGateDataDocsAction


def gate_docs_action():
    return _gate_docs_action_class()(name="update_data_docs", site_names=[DOCS_SITE])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):   # numpy scalars
        try:
            return _jsonable(value.item())
        except (ValueError, TypeError):
            pass
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _text(value: Any) -> str:
    value = _jsonable(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _condition_text(condition: Any) -> str:
    if isinstance(condition, dict):
        if condition.get("type") == "comparison":
            parameter = json.dumps(_jsonable(condition["parameter"]))
            return f"{condition['column']['name']} {condition['operator']} {parameter}"
        for key, joiner in (("conditions", " and "),):
            if key in condition:
                return joiner.join(_condition_text(c) for c in condition[key])
        return _text(condition)
    return str(condition)


def expectation_text(check_id: str, expectation_type: str, kwargs: dict) -> str:
    """'<check id>: <type>(<kwargs>)', readable (no batch id, long value lists shortened)."""
    parts, condition = [], None
    for key, value in kwargs.items():
        if key in ("batch_id", "result_format", "catch_exceptions", "include_config") or value is None:
            continue
        if key == "row_condition":
            condition = _condition_text(value.to_dict() if hasattr(value, "to_dict") else value)
            continue
        if key == "condition_parser":
            continue
        value = _jsonable(value)
        if isinstance(value, list) and len(value) > 12:
            value = value[:12] + [f"... {len(value) - 12} more"]
        parts.append(f"{key}={value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}")
    text = f"{check_id}: {expectation_type}({', '.join(parts)})"
    return f"{text} where {condition}" if condition else text


def raised_exception(exception_info: Any) -> str | None:
    """The message of an exception GE caught while evaluating an expectation, else None.
    (exception_info is either one {raised_exception, exception_message, ...} dict or such dicts
    keyed by metric.)"""
    if not isinstance(exception_info, dict):
        return None
    candidates = [exception_info, *[v for v in exception_info.values() if isinstance(v, dict)]]
    for info in candidates:
        if info.get("raised_exception"):
            lines = str(info.get("exception_message") or "").strip().splitlines()
            return lines[0] if lines else "exception"
    return None


def observed_text(result: dict, exception: str | None = None) -> str:
    """What GE observed, as one line of text."""
    if exception:
        return " ".join(f"exception: {exception}".split())[:MAX_OBSERVED_CHARS]
    result = result or {}
    if "observed_value" in result:
        text = _text(result["observed_value"])
        details = result.get("details")
        if details and isinstance(details, dict) and details.get("mismatched"):
            text += f" (mismatched: {_text(details['mismatched'])})"
    elif "unexpected_count" in result:
        count, total = result.get("unexpected_count") or 0, result.get("element_count") or 0
        share = result.get("unexpected_percent")
        text = f"{count} of {total} rows unexpected"
        if count and share is not None:
            text += f" ({share:.3g}% of non-null)"
        examples = result.get("partial_unexpected_list") or []
        if count and examples:
            text += f", e.g. {_text(examples[:5])}"
    else:
        text = _text(result) if result else ""
    text = " ".join(text.split())
    return text if len(text) <= MAX_OBSERVED_CHARS else text[:MAX_OBSERVED_CHARS - 3] + "..."


def result_rows(results: list, spec: RunSpec, gate: str, evaluated_at: datetime) -> list[dict]:
    rows = []
    for r in results:
        config = r.expectation_config
        meta = config.meta or {}
        check_id = meta.get("check_id", config.type)
        result = r.result or {}
        exception = raised_exception(r.exception_info)
        raised = exception is not None
        unexpected = result.get("unexpected_count", meta.get("unexpected_count"))
        observed = observed_text(result, exception)
        if meta.get("evidence") and not raised:   # the counts behind a share (SuiteBuilder.expect)
            observed = observed_text({"observed_value": f"{observed} ({meta['evidence']})"})
        rows.append({
            "run_id": spec.run_id, "month": spec.month, "gate": gate,
            "expectation": expectation_text(check_id, config.type, dict(config.kwargs)),
            "severity": SEVERITY_OF_GX.get(str(getattr(config.severity, "value", config.severity)), "error"),
            "success": bool(r.success) and not raised,
            "observed_value": observed,
            "unexpected_count": int(unexpected) if unexpected is not None else None,
            "evaluated_at": evaluated_at,
            "check_id": check_id,
        })
    return rows


def ensure_dq_table(con) -> None:
    con.execute("create schema if not exists audit")
    con.execute(DQ_RESULTS_DDL)


def store_results(warehouse: Path, run_id: str, gate: str, rows: list[dict]) -> None:
    """Replace the evidence of (run_id, gate) in audit.dq_results."""
    con = connect(warehouse)
    try:
        ensure_dq_table(con)
        with transaction(con):
            con.execute("delete from audit.dq_results where run_id = ? and gate = ?", [run_id, gate])
            if rows:
                con.executemany(f"insert into audit.dq_results ({', '.join(DQ_COLUMNS)}) "
                                f"values ({', '.join('?' for _ in DQ_COLUMNS)})",
                                [[row[c] for c in DQ_COLUMNS] for row in rows])
    finally:
        con.close()


def _trim_docs(docs: Path) -> Path:
    """The Data Docs index of the run. GE's site builder copies its static images and fonts (~4 MB)
    into every site; the pages use only the favicon (styles come from CDNs when viewed online), so
    the run folder keeps just that. (GE has no setting for it: this is the one file-level
    workaround left.)"""
    static = docs / "static"
    shutil.rmtree(static / "fonts", ignore_errors=True)
    for image in (static / "images").glob("*"):
        if image.name != "favicon.ico":
            image.unlink(missing_ok=True)
    return docs / "index.html"


def failure_message(gate: str, spec: RunSpec, errors: list[dict]) -> str:
    parts = [f"{row['expectation']} -> observed {row['observed_value']}" for row in errors]
    message = (f"quality gate '{gate}' failed for {spec.month_text} (run {spec.run_id}): "
               f"{len(errors)} error expectation(s) failed: " + "; ".join(parts))
    return " ".join(message.split())


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def evaluate(builder: SuiteBuilder, docs: Path | None = None) -> tuple[list[dict], Path | None]:
    """Validate the builder's datasets with GE: (one result row per check, Data Docs index or None).
    Nothing is stored; run_gate stores the rows."""
    gx = import_gx()
    spec, gate = builder.spec, builder.gate
    context = _context(gx, docs)
    evaluated_at = _now()
    results = _validate(gx, gate, spec, builder, context, data_docs=docs is not None)
    rows = result_rows(results, spec, gate, evaluated_at)
    missing = {c.check_id for c in builder.checks} - {r["check_id"] for r in rows}
    if missing:  # cannot happen with GE 1.x; never let a check vanish silently
        raise QualityGateError(f"quality gate '{gate}' for {spec.month_text}: no result for {sorted(missing)}")
    index = _trim_docs(docs) if docs is not None and (docs / "index.html").is_file() else None
    return rows, index


def build_gate(gate: str, spec: RunSpec, config: GateConfig | None = None) -> SuiteBuilder:
    """Read the gate's datasets and declare its checks (the warehouse is open only meanwhile)."""
    import duckdb

    config = config or load_gate_config()
    suite = load_suite(gate)
    con = connect(spec.warehouse)
    try:
        ensure_schema(con)
        ensure_dq_table(con)
        builder = SuiteBuilder(gate, spec, config, con)
        try:
            suite.build(builder)
        except duckdb.Error as exc:
            raise QualityGateError(f"quality gate '{gate}' failed for {spec.month_text} (run {spec.run_id}): "
                                   f"cannot read its data: {' '.join(str(exc).split())[:500]}") from exc
    finally:
        con.close()
    builder.con = None
    return builder


def run_gate(gate: str, spec: RunSpec) -> dict:
    """Evaluate one gate for the run; record every result; raise QualityGateError on an error failure."""
    started = time.perf_counter()
    if gate not in GATES:
        raise ValueError(f"unknown quality gate {gate!r}; expected one of {', '.join(GATES)}")
    config = load_gate_config()
    builder = build_gate(gate, spec, config)
    rows, index = evaluate(builder, docs_dir(spec) if config.data_docs else None)
    store_results(spec.warehouse, spec.run_id, gate, rows)

    errors = [r for r in rows if not r["success"] and r["severity"] == "error"]
    warnings_ = [r for r in rows if not r["success"] and r["severity"] == "warn"]
    for note in builder.notes:
        log.info("gate %s, %s: %s", gate, spec.month_text, note)
    for row in warnings_:
        log.warning("quality gate %s, %s: warning: %s -> observed %s", gate, spec.month_text,
                    row["expectation"], row["observed_value"])
    summary = {
        "gate": gate,
        "month": spec.month_text,
        "run_id": spec.run_id,
        "evaluated": len(rows),
        "failed_errors": len(errors),
        "failed_warnings": len(warnings_),
        "failed_checks": [r["check_id"] for r in errors + warnings_],
        "skipped": list(builder.notes),
        "data_docs": str(index) if index else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info(f"quality gate {gate} for {spec.month_text}: {len(rows)} expectations, {len(errors)} errors failed, "
             f"{len(warnings_)} warnings failed ({summary['seconds']} s)" + (f"; data docs {index}" if index else ""))
    if errors:
        raise QualityGateError(failure_message(gate, spec, errors))
    return summary


# --- reporting (tiering dq-report) --------------------------------------------------------------

def dq_report(warehouse: Path, month: date | str, run_id: str | None = None) -> list[dict]:
    """Every recorded expectation result of the month's latest evaluated run (or of `run_id`),
    gates in pipeline order, failures first. [] when nothing was recorded."""
    month = parse_month(month) if isinstance(month, str) else month
    con = connect(warehouse, read_only=True)
    try:
        exists = con.execute("select count(*) from information_schema.tables where table_schema = 'audit' "
                             "and table_name = 'dq_results' and table_catalog = current_database()").fetchall()[0][0]
        if not exists:
            return []
        if run_id is None:
            latest = con.execute("select run_id from audit.dq_results where month = ? "
                                 "order by evaluated_at desc, run_id desc limit 1", [month]).fetchall()
            if not latest:
                return []
            run_id = latest[0][0]
        cursor = con.execute(f"""
            select {', '.join(DQ_COLUMNS)} from audit.dq_results
            where month = ? and run_id = ?
            order by case gate when 'landed' then 1 when 'staging' then 2 when 'marts' then 3 else 4 end,
                     success, case severity when 'error' then 1 else 2 end, expectation""", [month, run_id])
        return [dict(zip(DQ_COLUMNS, r, strict=True)) for r in cursor.fetchall()]
    finally:
        con.close()


def format_dq_report(rows: list[dict]) -> str:
    """Plain-text report: one line per expectation and a summary per gate."""
    if not rows:
        return "no data quality results recorded for this month (run the month first)"
    first = rows[0]
    month = first["month"]
    month_text = f"{month:%Y-%m}" if hasattr(month, "strftime") else str(month)
    lines = [f"data quality results for {month_text}, run {first['run_id']}:"]
    gates: dict[str, list[dict]] = {}
    for row in rows:
        gates.setdefault(row["gate"], []).append(row)
    for gate, gate_rows in gates.items():
        failed_errors = sum(1 for r in gate_rows if not r["success"] and r["severity"] == "error")
        failed_warnings = sum(1 for r in gate_rows if not r["success"] and r["severity"] == "warn")
        verdict = "FAILED" if failed_errors else "passed"
        evaluated = max(r["evaluated_at"] for r in gate_rows)
        lines.append("")
        lines.append(f"gate {gate}: {verdict} - {len(gate_rows)} expectations, {failed_errors} errors failed, "
                     f"{failed_warnings} warnings failed (evaluated {evaluated:%Y-%m-%d %H:%M:%S} UTC)")
        for r in gate_rows:
            status = "ok  " if r["success"] else ("FAIL" if r["severity"] == "error" else "WARN")
            lines.append(f"  {status} {r['severity']:<5} {r['expectation']}")
            lines.append(f"       observed: {r['observed_value']}")
    return "\n".join(lines)
