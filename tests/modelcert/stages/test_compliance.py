"""Compliance stage: policy rules on the spec's declarations (each can pass and fail) and the demo specs."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from modelcert.context import EvalContext
from modelcert.evidence import Evidence
from modelcert.spec import parse_spec
from modelcert.stages.compliance import STAGE

BASE: dict = {
    "model": {"name": "m", "version": "1", "owner": "alice", "artifact": "model.skops", "sha256": "0" * 64,
              "features": ["income", "zip"]},
    "use_case": {"description": "unit test", "intended_use": "tests", "risk_tier": "high"},
    "governance": {"data_retention_days": 30, "consent_basis": "contract"},
    "data": {"test": "test.csv", "label": "y", "protected_attributes": {"sex": {"privileged": ["m"]},
                                                                       "age": {"privileged": {"min": 25}}}},
}


def make(tmp_path: Path, evidence: Evidence | None = None, **changes: dict) -> EvalContext:
    """A context from BASE with sections shallow-merged; compliance never reads data or loads the model."""
    raw = copy.deepcopy(BASE)
    for section, values in changes.items():
        raw.setdefault(section, {}).update(values)
    return EvalContext(spec=parse_spec(raw), base_dir=tmp_path, evidence=evidence)


def checks(out, name: str) -> dict[str, object]:
    return {c.subject: c for c in out.checks if c.name == name}


def test_all_declared_passes(tmp_path) -> None:
    out = STAGE.run(make(tmp_path))
    assert out.status == "passed", [c.message for c in out.failures]
    decl = checks(out, "declaration")
    assert set(decl) == {"use_case.intended_use", "model.owner", "use_case.risk_tier",
                         "governance.data_retention_days", "governance.consent_basis"}
    assert all(c.passed for c in decl.values())
    assert out.library == "modelcert-policy"
    json.dumps([dataclasses.asdict(c) for c in out.checks], allow_nan=False)
    json.dumps(out.summary, allow_nan=False)


def test_missing_consent_basis_fails(tmp_path) -> None:
    raw_gov = {"data_retention_days": 30, "consent_basis": None}
    out = STAGE.run(make(tmp_path, governance=raw_gov))
    c = checks(out, "declaration")["governance.consent_basis"]
    assert c.passed is False and c.required and "governance.consent_basis is missing" in c.message
    assert out.status == "failed" and len(out.failures) == 1


def test_empty_intended_use_fails_and_require_can_drop_it(tmp_path) -> None:
    out = STAGE.run(make(tmp_path, use_case={"intended_use": "   "}))
    c = checks(out, "declaration")["use_case.intended_use"]
    assert c.passed is False and "use_case.intended_use is missing" in c.message
    # a spec that does not require intended_use is not judged on it
    out = STAGE.run(make(tmp_path, use_case={"intended_use": None},
                         checks={"compliance": {"require": ["owner", "risk_tier"]}}))
    assert set(checks(out, "declaration")) == {"model.owner", "use_case.risk_tier"}
    assert out.status == "passed"


def test_pii_feature_fails(tmp_path) -> None:
    out = STAGE.run(make(tmp_path, governance={"pii_columns": ["zip", "name"]}))
    pii = checks(out, "pii_not_feature")
    assert pii["zip"].passed is False and "'zip'" in pii["zip"].message and "governance.pii_columns" in pii["zip"].message
    assert pii["name"].passed is True
    assert out.status == "failed" and [c.subject for c in out.failures] == ["zip"]


def test_protected_feature_needs_justification(tmp_path) -> None:
    out = STAGE.run(make(tmp_path))
    prot = checks(out, "protected_not_feature")
    assert prot["sex"].passed is True and prot["age"].passed is True  # neither is a feature
    with_age = {"features": ["income", "zip", "age"]}
    out = STAGE.run(make(tmp_path, model=with_age))
    prot = checks(out, "protected_not_feature")
    assert prot["age"].passed is False and prot["sex"].passed is True
    assert "governance.protected_feature_justification.age" in prot["age"].message
    assert out.status == "failed"
    out = STAGE.run(make(tmp_path, model=with_age, governance={"protected_feature_justification": {"age": "  "}}))
    assert checks(out, "protected_not_feature")["age"].passed is False
    why = "actuarially required for the product; reviewed by legal"
    out = STAGE.run(make(tmp_path, model=with_age, governance={"protected_feature_justification": {"age": why}}))
    c = checks(out, "protected_not_feature")["age"]
    assert c.passed is True and c.detail["justification"] == why
    assert out.status == "passed"


def test_high_risk_needs_two_roles(tmp_path) -> None:
    # A stored (policy-merged) spec whose quorum names one role: the compliance rule still catches it.
    out = STAGE.run(make(tmp_path, signoff={"required": {"model_validator": 2}, "policy_merged": True}))
    c = checks(out, "signoff_roles")[""]
    assert c.passed is False and c.value == 1 and "at least 2 distinct roles" in c.message
    assert out.status == "failed"
    # default sign-off of a high tier has two roles
    out = STAGE.run(make(tmp_path))
    assert checks(out, "signoff_roles")[""].passed is True and out.status == "passed"
    # a low tier with one role: informational only
    out = STAGE.run(make(tmp_path, use_case={"risk_tier": "low"}))
    c = checks(out, "signoff_roles")[""]
    assert c.passed is None and c.value == 1


def test_artifact_hashes_recorded(tmp_path) -> None:
    out = STAGE.run(make(tmp_path))
    assert checks(out, "artifact_sha256")[""].message == "evidence not collected"
    ev = Evidence(spec_sha256="a" * 64, files={
        "model": {"path": "/x/model.skops", "sha256": "b" * 64, "bytes": 10},
        "test": {"path": "/x/test.csv", "sha256": "c" * 64, "bytes": 20},
    })
    out = STAGE.run(make(tmp_path, evidence=ev))
    h = checks(out, "artifact_sha256")
    assert set(h) == {"model", "test"}
    assert h["model"].detail["sha256"] == "b" * 64 and h["model"].passed is None
    assert out.summary["evidence_digest"] == ev.digest


def test_audit_feature_checks_not_applicable(synthetic_ctx) -> None:
    df = pd.DataFrame({"y": [0, 1], "pred": [0, 1], "g": ["a", "b"]})
    ctx = synthetic_ctx({"test": df}, {"predictions": {"column": "pred", "positive": [1]},
                                       "governance": {"data_retention_days": 30, "consent_basis": "x",
                                                      "pii_columns": ["name"]},
                                       "data": {"label": "y", "protected_attributes": {"g": {"privileged": ["a"]}}}})
    out = STAGE.run(ctx)
    for name in ("pii_not_feature", "protected_not_feature"):
        c = checks(out, name)[""]
        assert c.passed is None and "not applicable: predictions only" in c.message
    assert out.status == "passed"


@pytest.mark.parametrize("name", ["german_credit", "adult_income", "compas_audit"])
def test_demo_specs_pass(demo_ctx, name) -> None:
    out = STAGE.run(demo_ctx(name))
    assert out.status == "passed", [c.message for c in out.failures]
    if name == "adult_income":
        prot = checks(out, "protected_not_feature")
        assert prot["sex"].passed is True and "justification" in prot["sex"].detail
        assert checks(out, "pii_not_feature")["fnlwgt"].passed is True
    if name == "compas_audit":
        assert checks(out, "signoff_roles")[""].value == 3


DOCS = {"provider": "p", "model_description": "d", "algorithm_rationale": "r", "assumptions": "a",
        "limitations": "l", "ethical_considerations": "e", "training_data_description": "t",
        "evaluation_data_description": "v", "human_oversight": "h", "monitoring_plan": "m", "cybersecurity": "c",
        "foreseeable_misuse": "f"}


def test_a_required_dossier_with_gaps_fails_high_tier_naming_the_items(tmp_path) -> None:
    raw = {**BASE["data"], "train": "train.csv", "current": "current.csv"}
    full = STAGE.run(make(tmp_path, use_case={"jurisdictions": ["EU"]}, documentation=DOCS, data=raw))
    c = checks(full, "dossier_completeness")["eu-ai-act"]
    assert c.passed is True and c.required, c.message
    gaps = {k: v for k, v in DOCS.items() if k not in ("human_oversight", "cybersecurity")}
    out = STAGE.run(make(tmp_path, use_case={"jurisdictions": ["EU"]}, documentation=gaps, data=raw))
    c = checks(out, "dossier_completeness")["eu-ai-act"]
    assert c.passed is False and c.required and out.status == "failed"
    assert "IV.2e (declare documentation.human_oversight in the spec)" in c.message
    assert "IV.2h (declare documentation.cybersecurity in the spec)" in c.message
    assert c.detail["missing"] and c.value == len(c.detail["missing"])


def test_dossier_gaps_only_warn_where_the_policy_says_warn(tmp_path) -> None:
    out = STAGE.run(make(tmp_path, use_case={"jurisdictions": ["US-NYC"], "risk_tier": "low"}))
    c = checks(out, "dossier_completeness")["nyc-ll144"]
    assert c.passed is False and c.required is False  # the shipped policy: low tier dossier_gaps warn (default)
    assert "documentation.evaluation_data_description" in c.message
    none = STAGE.run(make(tmp_path, use_case={"jurisdictions": ["US"]}))
    assert checks(none, "dossier_completeness")[""].passed is None
