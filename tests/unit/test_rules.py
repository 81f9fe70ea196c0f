from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tiering.rules import RulesError, load_rules
from tiering.settings import DEFAULT_RULES


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(DEFAULT_RULES.read_text())
    mutate(data)
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_rules_load_with_a_labelled_version():
    rules = load_rules()
    assert rules.version.startswith("default-") and len(rules.version) == len("default-") + 12
    assert rules.data["value"]["pareto"] == {"a_share": 0.8, "b_share": 0.95}


def test_same_content_same_version_whatever_the_formatting(tmp_path):
    path = _write(tmp_path, lambda d: None)  # same content, different layout, no comments
    assert load_rules(path).version == load_rules().version


def test_any_value_change_changes_the_version(tmp_path):
    path = _write(tmp_path, lambda d: d["value"]["pareto"].update(a_share=0.7))
    assert load_rules(path).version != load_rules().version


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["value"].update(colour="red"), "unknown key 'value.colour'"),
    (lambda d: d["value"]["pareto"].pop("b_share"), "missing key 'value.pareto.b_share'"),
    (lambda d: d["value"]["pareto"].update(a_share=0.96), "'value.pareto shares' must be strictly increasing"),
    (lambda d: d["value"].update(rule_set="magic"), "'value.rule_set' must be one of pareto, count, spend"),
    (lambda d: d["value"]["spend"].update(b_min=200000), "value.spend thresholds"),
    (lambda d: d["matrix"]["A"].update(D="Z"), "'matrix.A.D' must be one of A, B, C, D"),
    (lambda d: d["credit"]["on_time_rate_points"].reverse(), "credit.on_time_rate_points"),
    (lambda d: d["value"]["pareto"].update(a_share="high"), "'value.pareto.a_share' must be a number"),
])
def test_bad_rules_name_the_offending_key(tmp_path, mutate, message):
    with pytest.raises(RulesError) as err:
        load_rules(_write(tmp_path, mutate))
    assert message in str(err.value)
    assert "rules.yml" in str(err.value)


def test_optional_value_keys_default_without_changing_the_version(tmp_path):
    rules = load_rules()
    assert "measure" not in rules.data["value"] and "dormant_tier" not in rules.data["value"]
    margin = load_rules(_write(tmp_path, lambda d: d["value"].update(measure="gross_margin", dormant_tier=True)))
    assert margin.version != rules.version
    no_review = load_rules(_write(tmp_path, lambda d: d["policy"]["D"].update(review_cadence_months=None)))
    assert no_review.data["policy"]["D"]["review_cadence_months"] is None


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["value"].update(measure="profit"), "'value.measure' must be one of net_revenue, gross_margin"),
    (lambda d: d["value"].update(dormant_tier="yes"), "'value.dormant_tier' must be true or false"),
    (lambda d: d["policy"]["C"].update(contact_days=None), "'policy.C.contact_days' must be a number"),
])
def test_bad_optional_value_keys(tmp_path, mutate, message):
    with pytest.raises(RulesError, match=message.replace(".", r"\.")):
        load_rules(_write(tmp_path, mutate))


def test_missing_rules_file(tmp_path):
    with pytest.raises(RulesError, match="rules file not found"):
        load_rules(tmp_path / "nope.yml")
