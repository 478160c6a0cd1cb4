"""The spec's optional ``recertification:`` section: strict, field-named errors, overrides that merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelcert.errors import SpecError
from modelcert.spec import load_spec, merge_checks, parse_spec

SPECS = Path(__file__).resolve().parents[2] / "include" / "specs"


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    spec, _ = load_spec(SPECS / "german_credit.yaml")
    d = spec.model_dump(mode="json")
    d.pop("recertification")
    return d


def with_section(base: dict[str, Any], section: Any) -> dict[str, Any]:
    return {**base, "recertification": section}


@pytest.mark.parametrize("section, message", [
    ({"stages": ["drift"]}, "recertification.current_data: required field is missing"),
    ({"current_data": ""}, "recertification.current_data: String should have at least 1 character"),
    ({"current_data": "x_{date}.csv"}, "recertification.current_data: unknown placeholder(s) {date}"),
    ({"current_data": "x_{ds.csv"}, "recertification.current_data: 'x_{ds.csv' is not a valid template"),
    ({"current_data": "x.csv", "stages": ["compliance"]},
     "recertification.stages: compliance judges the spec, not production data"),
    ({"current_data": "x.csv", "stages": ["drift", "drift"]}, "recertification.stages: stage(s) ['drift'] listed more"),
    ({"current_data": "x.csv", "stages": ["driftt"]}, "recertification.stages.0: 'driftt' is not allowed"),
    ({"current_data": "x.csv", "stages": []}, "recertification.stages: List should have at least 1 item"),
    ({"current_data": "x.csv", "stages": ["fairness"]},
     "recertification: stages ['fairness'] judge predictions against true labels, but labels_available is false"),
    ({"current_data": "x.csv", "labels_available": "sometimes"}, "recertification.labels_available: Input should be a valid boolean"),
    ({"current_data": "x.csv", "expiring_within_days": -1}, "recertification.expiring_within_days: Input should be greater"),
    ({"current_data": "x.csv", "schedule": "@daily"}, "recertification.schedule: unknown key"),
    ({"current_data": "x.csv", "checks": {"compliance": {}}}, "recertification.checks: compliance: judges the spec"),
    ({"current_data": "x.csv", "checks": {"drift": {"max_drifted_share": 1.5}}},
     "recertification.checks.drift.max_drifted_share: Input should be less than or equal to 1"),
    ({"current_data": "x.csv", "checks": {"drift": {"share": 0.1}}}, "recertification.checks.drift.share: unknown key"),
    ({"current_data": "x.csv", "checks": {"performance": {"auc": {"min": 0.7}}}},
     "recertification.checks.performance: unknown metric(s) ['auc']"),
    ({"current_data": "x.csv", "checks": {"fairness": {"disparate_impact": {}}}},
     "recertification.checks.fairness.disparate_impact: a threshold needs at least one of min, max"),
    ("x.csv", "recertification: Input should be a valid dictionary"),
])
def test_bad_section_names_the_field(base: dict[str, Any], section: Any, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(with_section(base, section))
    assert message in str(exc.value), str(exc.value)


def test_drift_and_robustness_need_what_they_compare(base: dict[str, Any]) -> None:
    no_reference = {**base, "data": {**base["data"], "train": None, "reference": None}}
    with pytest.raises(SpecError, match="recertification: stages lists drift, but the spec has no data.reference"):
        parse_spec(with_section(no_reference, {"current_data": "x.csv", "stages": ["drift"]}))
    audit = {**base, "model": {k: v for k, v in base["model"].items()
                               if k not in ("artifact", "sha256", "format", "features")},
             "predictions": {"column": "p", "positive": [1]}}
    with pytest.raises(SpecError, match="recertification: stages lists robustness, but the spec has no model.artifact"):
        parse_spec(with_section(audit, {"current_data": "x.csv", "stages": ["robustness"], "labels_available": True}))


def test_defaults(base: dict[str, Any]) -> None:
    section = parse_spec(with_section(base, {"current_data": "prod/x_{ds}.csv"})).recertification
    assert section is not None
    assert section.effective_stages == ["data_quality", "drift", "performance", "fairness"]
    assert section.labels_available is False and section.expiring_within_days == 14
    labelled = parse_spec(with_section(base, {"current_data": "x.csv", "labels_available": True,
                                              "stages": ["robustness", "data_quality"]})).recertification
    assert labelled is not None and labelled.effective_stages == ["data_quality", "robustness"]


def test_overrides_merge_onto_the_certification_checks(base: dict[str, Any]) -> None:
    spec = parse_spec(with_section(base, {"current_data": "x.csv", "checks": {
        "drift": {"max_drifted_share": 0.1},
        "performance": {"roc_auc": {"min": 0.75}, "brier_score": None, "accuracy": {"min": 0.6}},
        "data_quality": {"null_fraction": {"max": 0.02}},
    }}))
    assert spec.recertification is not None
    merged = merge_checks(spec.checks, spec.recertification.checks)
    assert merged.drift.max_drifted_share == 0.1 and spec.checks.drift.max_drifted_share == 0.3
    assert merged.performance["roc_auc"].min == 0.75
    assert "brier_score" not in merged.performance  # null drops the certification's bound
    assert merged.performance["accuracy"].min == 0.6
    assert merged.performance["balanced_accuracy"].min == 0.6  # untouched metrics keep their bounds
    assert merged.data_quality.null_fraction.max == 0.02
    assert merged.data_quality.ranges == spec.checks.data_quality.ranges  # fields not given are kept
    assert merged.fairness == spec.checks.fairness


def test_stored_spec_parses_back_to_the_same_overrides(base: dict[str, Any]) -> None:
    """Runs store ``spec.model_dump(mode="json")``; parsing it back must not turn defaults into overrides."""
    d = {**base, "checks": {**base["checks"], "drift": {"max_drifted_share": 0.3, "column_threshold": 0.01}}}
    spec = parse_spec(with_section(d, {"current_data": "x.csv", "checks": {"drift": {"max_drifted_share": 0.1}}}))
    again = parse_spec(spec.model_dump(mode="json"))
    assert again == spec
    assert spec.model_dump(mode="json")["recertification"]["checks"] == {"drift": {"max_drifted_share": 0.1}}
    assert again.recertification is not None
    merged = merge_checks(again.checks, again.recertification.checks)
    assert merged.drift.column_threshold == 0.01 and merged.drift.max_drifted_share == 0.1


def test_shipped_specs_with_recertification(demo_build: Path) -> None:
    v1, _ = load_spec(SPECS / "german_credit.yaml")
    v2, _ = load_spec(SPECS / "german_credit_v2.yaml")
    assert v1.recertification is not None and v2.recertification is not None
    assert v1.model.sha256 == v2.model.sha256 and v1.model.version != v2.model.version
    assert "healthy" in v1.recertification.current_data and "long_loans" in v2.recertification.current_data
    assert merge_checks(v2.checks, v2.recertification.checks).drift.max_drifted_share == 0.25
