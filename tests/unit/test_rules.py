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
    (lambda d: d["value"].update(measure="profit"),
     "'value.measure' must be net_revenue or gross_margin, got 'profit'"),
    (lambda d: d["value"].update(dormant_tier="yes"), "'value.dormant_tier' must be true or false"),
    (lambda d: d["policy"]["C"].update(contact_days=None), "'policy.C.contact_days' must be a number"),
])
def test_bad_optional_value_keys(tmp_path, mutate, message):
    with pytest.raises(RulesError, match=message.replace(".", r"\.")):
        load_rules(_write(tmp_path, mutate))


def test_missing_rules_file(tmp_path):
    with pytest.raises(RulesError, match="rules file not found"):
        load_rules(tmp_path / "nope.yml")


# --- the pydantic models, the version and the JSON Schema ------------------------------------

# rule_version of config/tiering_rules.yml as computed before the models replaced the hand-written
# checks: validation must never change the version of an existing file
DEFAULT_RULE_VERSION = "default-6a5a6a5a86e3"


def test_the_default_rules_keep_their_exact_version():
    assert load_rules().version == DEFAULT_RULE_VERSION


def test_defaults_of_the_models_do_not_enter_the_version(tmp_path):
    """A file without the optional `potential` section hashes its own content: the section's
    defaults (filled in by the model) are not part of it."""
    import hashlib
    import json

    path = _write(tmp_path, lambda d: d.pop("potential"))
    data = yaml.safe_load(path.read_text())
    expected = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    rules = load_rules(path)
    assert rules.version == f"default-{expected}"
    assert "potential" not in rules.data


def test_downgrade_after_months_defaults_into_the_content_as_it_always_has(tmp_path):
    """The one default that has always been written into the hashed content (and dbt's vars)."""
    path = _write(tmp_path, lambda d: d["value"].pop("downgrade_after_months"))
    rules = load_rules(path)
    assert rules.data["value"]["downgrade_after_months"] == 1
    assert rules.version == DEFAULT_RULE_VERSION


def test_every_problem_is_one_line_with_the_file_and_the_allowed_values(tmp_path):
    def mutate(d):
        d["value"].update(rule_set="magic", window_months=0)
        d["potential"].update(sample=5)
        d["customer_code"]["tier_codes"].update(A="1")

    path = _write(tmp_path, mutate)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert str(err.value).splitlines() == [
        f"{path}: 'value.window_months' must be a whole number from 1 to 120, got 0",
        f"{path}: 'value.rule_set' must be one of pareto, count, spend, got 'magic'",
        f"{path}: 'customer_code.tier_codes.A' must be a two-digit text code like \"01\", got '1'",
        f"{path}: unknown key 'potential.sample'; allowed keys: enabled, horizon_months, penalizer_coef, "
        "min_customers, max_customers",
    ]


def test_the_cli_prints_an_invalid_rules_file_on_one_line(tmp_path, capsys):
    from tiering.cli import main

    path = _write(tmp_path, lambda d: d["value"].update(rule_set="magic", window_months=0))
    source = tmp_path / "source"
    source.mkdir()
    assert main(["run", "--source", str(source), "--month", "2024-01", "--rules", str(path),
                 "--warehouse", str(tmp_path / "w.duckdb")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"tiering: error: {path}: 'value.window_months' must be a whole number from 1 to 120")
    assert "; " + f"{path}: 'value.rule_set' must be one of pareto, count, spend" in err
    assert not (tmp_path / "w.duckdb").exists()


def test_the_committed_json_schema_is_the_models_schema():
    import json

    from tiering.rules import SCHEMA_FILE, json_schema, schema_text

    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), \
        "config/tiering_rules.schema.json is stale: run python -m tiering.rules schema"
    assert SCHEMA_FILE.read_text() == schema_text()
    # editors find the schema through the rules file's first line (a comment: not in the version)
    assert DEFAULT_RULES.read_text().splitlines()[0] == "# yaml-language-server: $schema=./tiering_rules.schema.json"


def test_the_default_rules_validate_against_the_json_schema_and_a_typo_does_not():
    import json

    import jsonschema

    from tiering.rules import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    data = yaml.safe_load(DEFAULT_RULES.read_text())
    assert list(validator.iter_errors(data)) == []
    data["value"]["rule_set"] = "magic"
    data["value"]["colour"] = "red"
    messages = sorted(e.message for e in validator.iter_errors(data))
    assert messages == ["'magic' is not one of ['pareto', 'count', 'spend']",
                        "Additional properties are not allowed ('colour' was unexpected)"]


def test_the_potential_defaults_of_the_model_are_the_steps_defaults():
    from tiering.potential import DEFAULTS
    from tiering.rules import Potential

    assert Potential().model_dump() == DEFAULTS
