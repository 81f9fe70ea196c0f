"""Load and validate the rules file; compute its rule_version.

The rules file (config/tiering_rules.yml) holds every business rule. It is
validated on load so that a typo fails the run before any data is written,
with a message naming the offending key. dbt receives the validated rules as
the `rules` var, so SQL never carries thresholds as literals.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tiering.errors import TieringError
from tiering.settings import DEFAULT_RULES

TIERS = ("A", "B", "C", "D")
GRADES = ("A", "B", "C", "D", "unrated")
RULE_SETS = ("pareto", "count", "spend")
VALUE_MEASURES = ("net_revenue", "gross_margin")


class RulesError(TieringError, ValueError):
    """The rules file is invalid; the message names the file and the key."""


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
    try:
        _validate(data)
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None
    return Rules(data=data, version=rule_version(data), path=path)


# --- validation -----------------------------------------------------------

def _keys(obj: Any, where: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(obj, dict):
        raise RulesError(f"'{where}' must be a mapping")
    unknown = set(obj) - required - set(optional)
    if unknown:
        raise RulesError(f"unknown key '{where}.{sorted(unknown)[0]}'" if where else f"unknown key '{sorted(unknown)[0]}'")
    missing = required - set(obj)
    if missing:
        raise RulesError(f"missing key '{where + '.' if where else ''}{sorted(missing)[0]}'")
    return obj


def _number(obj: dict, key: str, where: str, lo: float | None = None, hi: float | None = None) -> float:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RulesError(f"'{where}.{key}' must be a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise RulesError(f"'{where}.{key}' = {value} is outside [{lo}, {hi}]")
    return value


def _increasing(values: list[float], where: str, strictly_decreasing: bool = False) -> None:
    pairs = list(zip(values, values[1:]))
    ok = all(b < a for a, b in pairs) if strictly_decreasing else all(a < b for a, b in pairs)
    if not ok:
        order = "decreasing" if strictly_decreasing else "increasing"
        raise RulesError(f"'{where}' must be strictly {order}, got {values}")


def _bands(obj: dict, key: str, where: str, descending: bool) -> None:
    bands = obj[key]
    if not isinstance(bands, list) or not bands or not all(
        isinstance(b, list) and len(b) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b)
        for b in bands
    ):
        raise RulesError(f"'{where}.{key}' must be a list of [bound, points] pairs")
    bounds = [b[0] for b in bands]
    points = [b[1] for b in bands]
    _increasing(bounds, f"{where}.{key} bounds", strictly_decreasing=descending)
    # points must get worse (not larger) as behaviour gets worse: monotonic by construction
    if any(b > a for a, b in zip(points, points[1:])):
        raise RulesError(f"'{where}.{key}' points must not increase from one band to the next, got {points}")


def _validate(data: Any) -> None:
    _keys(data, "", {"label", "reporting_currency", "value", "credit", "matrix",
                     "credit_hold_grades", "policy", "customer_code", "alerts"}, {"potential"})
    if not isinstance(data["label"], str) or not data["label"].replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise RulesError("'label' must be a short text of letters, digits, '-', '_' or '.'")
    if not (isinstance(data["reporting_currency"], str) and len(data["reporting_currency"]) == 3):
        raise RulesError("'reporting_currency' must be a 3-letter currency code")

    value = _keys(data["value"], "value", {"window_months", "rule_set", "pareto", "count", "spend",
                                           "key_account_share", "rfm_buckets", "group_accounts"},
                  {"downgrade_after_months", "measure", "dormant_tier"})
    value.setdefault("downgrade_after_months", 1)
    if isinstance(value["downgrade_after_months"], bool) or not isinstance(value["downgrade_after_months"], int) \
            or not 1 <= value["downgrade_after_months"] <= 24:
        raise RulesError("'value.downgrade_after_months' must be a whole number of months from 1 (no hysteresis) to 24")
    if not isinstance(value["group_accounts"], bool):
        raise RulesError("'value.group_accounts' must be true or false")
    if not isinstance(value["window_months"], int) or not 1 <= value["window_months"] <= 120:
        raise RulesError("'value.window_months' must be a whole number of months from 1 to 120")
    if value["rule_set"] not in RULE_SETS:
        raise RulesError(f"'value.rule_set' must be one of {', '.join(RULE_SETS)}, got {value['rule_set']!r}")
    pareto = _keys(value["pareto"], "value.pareto", {"a_share", "b_share"})
    _increasing([_number(pareto, k, "value.pareto", 0, 1) for k in ("a_share", "b_share")], "value.pareto shares")
    count = _keys(value["count"], "value.count", {"a_share", "b_share"})
    shares = [_number(count, k, "value.count", 0, 1) for k in ("a_share", "b_share")]
    if sum(shares) > 1:
        raise RulesError("'value.count' a_share + b_share must not exceed 1")
    spend = _keys(value["spend"], "value.spend", {"a_min", "b_min", "c_min"})
    _increasing([_number(spend, k, "value.spend", 0) for k in ("a_min", "b_min", "c_min")],
                "value.spend thresholds (a_min > b_min > c_min)", strictly_decreasing=True)
    _number(value, "key_account_share", "value", 0, 1)
    _validate_value_options(value)
    if value["rfm_buckets"] not in (3, 4, 5, 10):
        raise RulesError("'value.rfm_buckets' must be 3, 4, 5 or 10")

    credit = _keys(data["credit"], "credit", {"window_months", "arrears_dpd", "on_time_rate_points",
                                              "max_days_late_points", "overdue_ratio_points",
                                              "grade_min_score", "limit_months_of_revenue"})
    if not isinstance(credit["window_months"], int) or not 1 <= credit["window_months"] <= 120:
        raise RulesError("'credit.window_months' must be a whole number of months from 1 to 120")
    _number(credit, "arrears_dpd", "credit", 1)
    _bands(credit, "on_time_rate_points", "credit", descending=True)
    _bands(credit, "max_days_late_points", "credit", descending=False)
    _bands(credit, "overdue_ratio_points", "credit", descending=False)
    if credit["on_time_rate_points"][-1][0] != 0:
        raise RulesError("'credit.on_time_rate_points' last band must start at 0 so every rate gets points")
    grades = _keys(credit["grade_min_score"], "credit.grade_min_score", set(TIERS))
    _increasing([_number(grades, g, "credit.grade_min_score", 0) for g in TIERS],
                "credit.grade_min_score (A > B > C > D)", strictly_decreasing=True)
    limits = _keys(credit["limit_months_of_revenue"], "credit.limit_months_of_revenue", set(GRADES))
    for g in GRADES:
        _number(limits, g, "credit.limit_months_of_revenue", 0)

    alerts = _keys(data["alerts"], "alerts", {"value_drop_share"})
    _number(alerts, "value_drop_share", "alerts", 0, 1)

    matrix = _keys(data["matrix"], "matrix", set(TIERS))
    for tier in TIERS:
        row = _keys(matrix[tier], f"matrix.{tier}", set(GRADES))
        for grade in GRADES:
            if row[grade] not in TIERS:
                raise RulesError(f"'matrix.{tier}.{grade}' must be one of {', '.join(TIERS)}, got {row[grade]!r}")
    holds = data["credit_hold_grades"]
    if not isinstance(holds, list) or any(g not in GRADES for g in holds):
        raise RulesError(f"'credit_hold_grades' must be a list of grades from {', '.join(GRADES)}")

    policy = _keys(data["policy"], "policy", set(TIERS))
    for tier in TIERS:
        p = _keys(policy[tier], f"policy.{tier}", {"account_manager", "contact_cadence", "contact_days",
                                                   "review_cadence_months", "complaint_priority", "description"})
        for k in ("contact_days", "review_cadence_months", "complaint_priority"):
            if not (k == "review_cadence_months" and p[k] is None):   # null: no fixed review
                _number(p, k, f"policy.{tier}", 0)

    code = _keys(data["customer_code"], "customer_code", {"tier_codes", "region_codes", "unknown_region_code",
                                                          "scale_min_revenue", "sequence_digits"})
    tier_codes = _keys(code["tier_codes"], "customer_code.tier_codes", set(TIERS))
    regions = code["region_codes"]
    if not isinstance(regions, dict):
        raise RulesError("'customer_code.region_codes' must be a mapping")
    for key, val in [*tier_codes.items(), *regions.items(), ("unknown_region_code", code["unknown_region_code"])]:
        if not (isinstance(val, str) and len(val) == 2 and val.isdigit()):
            raise RulesError(f"customer_code '{key}' must map to a two-digit text code like \"01\", got {val!r}")
    scales = code["scale_min_revenue"]
    if not isinstance(scales, dict) or not scales or any(not (isinstance(k, str) and len(k) == 1 and k.isdigit()) for k in scales):
        raise RulesError("'customer_code.scale_min_revenue' must map one-digit text codes to minimum revenues")
    _increasing([scales[k] for k in sorted(scales)], "customer_code.scale_min_revenue")
    if not isinstance(code["sequence_digits"], int) or not 4 <= code["sequence_digits"] <= 12:
        raise RulesError("'customer_code.sequence_digits' must be a whole number from 4 to 12")
    if "potential" in data:
        _validate_potential(data["potential"])


def _validate_value_options(value: dict) -> None:
    """Optional value keys, absent = default (not written into the data: the rule_version of a file
    without them stays what it was). value.measure: what is ranked, net_revenue (default) or
    gross_margin; value.dormant_tier: true puts customers without positive value but with an
    earlier purchase in D under the pareto and count rule sets (default false)."""
    if value.get("measure", "net_revenue") not in VALUE_MEASURES:
        raise RulesError(f"'value.measure' must be one of {', '.join(VALUE_MEASURES)}, got {value['measure']!r}")
    if not isinstance(value.get("dormant_tier", False), bool):
        raise RulesError("'value.dormant_tier' must be true or false")


def _validate_potential(section: Any) -> None:
    """Optional `potential` section (defaults: tiering.potential.DEFAULTS)."""
    p = _keys(section, "potential", set(), {"enabled", "horizon_months", "penalizer_coef", "min_customers",
                                            "max_customers"})
    if "enabled" in p and not isinstance(p["enabled"], bool):
        raise RulesError("'potential.enabled' must be true or false")
    for key, lo, hi in (("horizon_months", 1, 60), ("min_customers", 2, None), ("max_customers", 0, None)):
        if key in p and (isinstance(p[key], bool) or not isinstance(p[key], int)
                         or p[key] < lo or (hi is not None and p[key] > hi)):
            raise RulesError(f"'potential.{key}' must be a whole number from {lo}" + (f" to {hi}" if hi else ""))
    if "penalizer_coef" in p:
        _number(p, "penalizer_coef", "potential", 0, 10)
