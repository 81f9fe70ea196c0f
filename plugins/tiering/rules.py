"""Load and validate the rules file; compute its rule_version.

The rules file (config/tiering_rules.yml) holds every business rule. It is
validated on load (pydantic models: `RulesFile` and its sections) so that a typo
fails the run before any data is written, with one line per problem naming the
key and what is allowed. dbt receives the rules as the `rules` var, so SQL never
carries thresholds as literals.

rule_version hashes the file's content as parsed (not the model's dump): a default
a model fills in never changes the version of an existing file. The models' JSON
Schema is committed as config/tiering_rules.schema.json for editors:

    python -m tiering.rules schema [--out config/tiering_rules.schema.json]
    python -m tiering.rules check [FILE]
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from tiering.errors import TieringError
from tiering.settings import DEFAULT_RULES
from tiering.validation import PATTERN_HELP, STRICT, validate

TIERS = ("A", "B", "C", "D")
GRADES = ("A", "B", "C", "D", "unrated")
RULE_SETS = ("pareto", "count", "spend")
SCHEMA_FILE = DEFAULT_RULES.with_name("tiering_rules.schema.json")
VALUE_MEASURES = ("net_revenue", "gross_margin")


class RulesError(TieringError, ValueError):
    """The rules file is invalid; one line per problem, each naming the file and the key."""


@dataclass(frozen=True)
class Rules:
    data: dict[str, Any]
    version: str
    path: Path

    @property
    def canonical_json(self) -> str:
        return canonical_json(self.data)

    def dbt_vars(self) -> dict[str, Any]:
        return {"rules": self.data, "rule_version": self.version}


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def rule_version(data: dict[str, Any]) -> str:
    digest = hashlib.sha256(canonical_json(data).encode()).hexdigest()[:12]
    return f"{data['label']}-{digest}"


def load_rules(path: str | Path | None = None) -> Rules:
    path = Path(path) if path else DEFAULT_RULES
    if not path.is_file():
        raise RulesError(f"rules file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from exc
    _, found = validate(RulesFile, data)
    if found:
        raise RulesError("\n".join(f"{path}: {problem}" for problem in found))
    # The one default that is part of the hashed content: the validator has always written it
    # into the rules (and so into every rule_version and into dbt's vars) when the file has none.
    data["value"].setdefault("downgrade_after_months", 1)
    return Rules(data=data, version=rule_version(data), path=path)


# --- the models of the file ---------------------------------------------------------

Tier = Literal["A", "B", "C", "D"]
Grade = Literal["A", "B", "C", "D", "unrated"]
Share = Annotated[float, Field(ge=0, le=1)]
Amount = Annotated[float, Field(ge=0)]
Months = Annotated[int, Field(ge=1, le=120)]
LABEL = r"^[A-Za-z0-9._-]+$"
CURRENCY = r"^[A-Za-z]{3}$"
TWO_DIGITS = r"^[0-9]{2}$"
ONE_DIGIT = r"^[0-9]$"
PATTERN_HELP.update({LABEL: "a short text of letters, digits, '-', '_' or '.'",
                     CURRENCY: "a 3-letter currency code",
                     TWO_DIGITS: 'a two-digit text code like "01"',
                     ONE_DIGIT: 'a one-digit text code like "1"'})
TwoDigitCode = Annotated[str, Field(pattern=TWO_DIGITS)]
# [bound, points]: a band of a credit score table
Band = Annotated[list[Annotated[float, Field()]], Field(min_length=2, max_length=2)]


def _strictly(values: list, decreasing: bool) -> bool:
    pairs = list(pairwise(values))
    return all(b < a for a, b in pairs) if decreasing else all(a < b for a, b in pairs)


def _check_bands(bands: list[list[float]], key: str, decreasing: bool) -> None:
    bounds, points = [b[0] for b in bands], [b[1] for b in bands]
    if not _strictly(bounds, decreasing):
        order = "decreasing" if decreasing else "increasing"
        raise ValueError(f"'{{loc}}.{key}' bounds must be strictly {order}, got {bounds}")
    # points must get worse (not larger) as behaviour gets worse: monotonic by construction
    if any(b > a for a, b in pairwise(points)):
        raise ValueError(f"'{{loc}}.{key}' points must not increase from one band to the next, got {points}")


class _Section(BaseModel):
    model_config = STRICT


class Pareto(_Section):
    """Pareto by value share, on prior_share (the share of everyone ranked strictly before)."""
    a_share: Share = Field(description="A while prior_share < a_share")
    b_share: Share = Field(description="B while prior_share < b_share, else C")

    @model_validator(mode="after")
    def _increasing(self):
        if not self.a_share < self.b_share:
            raise ValueError(f"'{{loc}} shares' must be strictly increasing (a_share < b_share), "
                             f"got [{self.a_share}, {self.b_share}]")
        return self


class Count(_Section):
    """Shares of positive-value customers, rounded up."""
    a_share: Share = Field(description="top share of customers -> A")
    b_share: Share = Field(description="next share -> B, rest C")

    @model_validator(mode="after")
    def _at_most_all(self):
        if self.a_share + self.b_share > 1:
            raise ValueError(f"'{{loc}}' a_share + b_share must not exceed 1, got {self.a_share} + {self.b_share}")
        return self


class Spend(_Section):
    """Annual spend in the reporting currency (annualised if the window is not 12 months)."""
    a_min: Amount
    b_min: Amount
    c_min: Amount = Field(description="below -> D")

    @model_validator(mode="after")
    def _decreasing(self):
        values = [self.a_min, self.b_min, self.c_min]
        if not _strictly(values, decreasing=True):
            raise ValueError(f"'{{loc}} thresholds (a_min > b_min > c_min)' must be strictly decreasing, got {values}")
        return self


class Value(_Section):
    window_months: Months = Field(description="trailing window ending with the computed month")
    rule_set: Literal["pareto", "count", "spend"]
    pareto: Pareto
    count: Count
    spend: Spend
    key_account_share: Share = Field(description="top share of positive-value customers (rounded up)")
    rfm_buckets: Literal[3, 4, 5, 10]
    group_accounts: bool = Field(description="rank groups (parent + children summed)")
    downgrade_after_months: Annotated[int, Field(ge=1, le=24)] = Field(
        1, description="hysteresis: a downgrade needs this many consecutive months below (1 = off)")
    # optional keys: absent means the default, and is not written into the data (the rule_version
    # of a file without them stays what it was; the models read them with rule_or)
    measure: Literal["net_revenue", "gross_margin"] = Field(
        "net_revenue", description="what is ranked: net revenue, or gross margin (docs/rules.md)")
    dormant_tier: bool = Field(
        False, description="pareto and count: customers with no positive value in the window but an earlier "
                           "purchase get D")


class GradeScores(_Section):
    """Minimum credit score of each grade: A > B > C > D."""
    A: Amount
    B: Amount
    C: Amount
    D: Amount

    @model_validator(mode="after")
    def _decreasing(self):
        values = [self.A, self.B, self.C, self.D]
        if not _strictly(values, decreasing=True):
            raise ValueError(f"'{{loc}} (A > B > C > D)' must be strictly decreasing, got {values}")
        return self


class GradeLimits(_Section):
    """Suggested credit limit = average monthly revenue x this, per grade."""
    A: Amount
    B: Amount
    C: Amount
    D: Amount
    unrated: Amount


class Credit(_Section):
    window_months: Months = Field(description="invoices issued in the trailing window")
    arrears_dpd: Annotated[float, Field(ge=1)] = Field(
        description="arrears flag: an open invoice at least this many days past due")
    on_time_rate_points: list[Band] = Field(min_length=1, description="[minimum on-time rate, points]")
    max_days_late_points: list[Band] = Field(min_length=1, description="[maximum worst days late, points]")
    overdue_ratio_points: list[Band] = Field(
        min_length=1, description="[maximum overdue balance / invoiced in window, points]")
    grade_min_score: GradeScores
    limit_months_of_revenue: GradeLimits

    @model_validator(mode="after")
    def _bands(self):
        _check_bands(self.on_time_rate_points, "on_time_rate_points", decreasing=True)
        _check_bands(self.max_days_late_points, "max_days_late_points", decreasing=False)
        _check_bands(self.overdue_ratio_points, "overdue_ratio_points", decreasing=False)
        if self.on_time_rate_points[-1][0] != 0:
            raise ValueError("'{loc}.on_time_rate_points' last band must start at 0 so every rate gets points")
        return self


class Alerts(_Section):
    value_drop_share: Share = Field(
        description="alert when a key account's or A customer's value falls by more than this")


class MatrixRow(_Section):
    """Final tier for each credit grade, given the value tier."""
    A: Tier
    B: Tier
    C: Tier
    D: Tier
    unrated: Tier


class Matrix(_Section):
    A: MatrixRow
    B: MatrixRow
    C: MatrixRow
    D: MatrixRow


class TierPolicy(_Section):
    account_manager: str
    contact_cadence: str
    contact_days: Amount
    review_cadence_months: Amount | None = Field(description="null: no fixed review (no review-due action)")
    complaint_priority: Amount
    description: str


class Policy(_Section):
    A: TierPolicy
    B: TierPolicy
    C: TierPolicy
    D: TierPolicy


class TierCodes(_Section):
    A: TwoDigitCode
    B: TwoDigitCode
    C: TwoDigitCode
    D: TwoDigitCode


class CustomerCode(_Section):
    tier_codes: TierCodes
    region_codes: dict[str, TwoDigitCode]
    unknown_region_code: TwoDigitCode
    scale_min_revenue: dict[Annotated[str, Field(pattern=ONE_DIGIT)], Amount] = Field(
        min_length=1, description="scale code = highest band reached by trailing net revenue")
    sequence_digits: Annotated[int, Field(ge=4, le=12)]

    @model_validator(mode="after")
    def _scales_increase(self):
        values = [self.scale_min_revenue[k] for k in sorted(self.scale_min_revenue)]
        if not _strictly(values, decreasing=False):
            raise ValueError(f"'{{loc}}.scale_min_revenue' must be strictly increasing by code, got {values}")
        return self


class Potential(_Section):
    """Optional: customer potential (BG/NBD, Gamma-Gamma); defaults as tiering.potential.DEFAULTS."""
    enabled: bool = Field(True, description='false: the step records "skipped"')
    horizon_months: Annotated[int, Field(ge=1, le=60)] = Field(
        12, description="expected purchases / revenue over this many months after the month end")
    penalizer_coef: Annotated[float, Field(ge=0, le=10)] = Field(0.001, description="L2 penalty of both fits")
    min_customers: Annotated[int, Field(ge=2)] = Field(20, description="fewer customers with purchases: no fit")
    max_customers: Annotated[int, Field(ge=0)] = Field(
        200_000, description="> 0: fit on a reproducible sample of this many customers, score all (0: all)")


class RulesFile(_Section):
    """config/tiering_rules.yml: every business rule of the monthly tiering (docs/rules.md)."""
    label: str = Field(pattern=LABEL, description="first part of rule_version")
    reporting_currency: str = Field(pattern=CURRENCY)
    value: Value
    credit: Credit
    alerts: Alerts
    matrix: Matrix
    credit_hold_grades: list[Grade]
    policy: Policy
    customer_code: CustomerCode
    potential: Potential | None = None


def json_schema() -> dict:
    """The JSON Schema of the rules file (what config/tiering_rules.schema.json holds)."""
    schema = RulesFile.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "tiering_rules.schema.json", **schema}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def _main(argv: list[str] | None = None) -> int:
    """`python -m tiering.rules schema [--out FILE]` | `python -m tiering.rules check [FILE]`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tiering.rules")
    sub = parser.add_subparsers(dest="command", required=True)
    schema = sub.add_parser("schema", help="write the rules file's JSON Schema (for editors)")
    schema.add_argument("--out", type=Path, default=SCHEMA_FILE)
    check = sub.add_parser("check", help="validate a rules file and print its rule_version")
    check.add_argument("file", type=Path, nargs="?", default=DEFAULT_RULES)
    args = parser.parse_args(argv)
    if args.command == "schema":
        from tiering.files import atomic_write

        atomic_write(args.out, schema_text())
        print(f"wrote {args.out}")
        return 0
    try:
        print(load_rules(args.file).version)
    except RulesError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
