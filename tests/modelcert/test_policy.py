"""The risk policy: the institution sets the bar (artifact formats, reviewed skops types), never the submitter."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelcert import pipeline, policy
from modelcert.db.models import CertificationRun
from modelcert.db.session import reader
from modelcert.errors import SpecError
from modelcert.spec import CertificationSpec, parse_spec
from tests.modelcert.test_recertify import fake_stages  # noqa: F401 - a fixture
from tests.modelcert.test_sandbox import _Reduce, joblib_spec, pickle_bytes

TREE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def spec(tier: str = "high", fmt: str = "joblib", trusted: list[str] | None = None) -> CertificationSpec:
    return parse_spec({"model": {"name": "m", "version": "1", "owner": "a", "artifact": f"m.{fmt}", "format": fmt,
                                 "sha256": "0" * 64, "features": ["x"], "trusted_types": trusted or []},
                       "use_case": {"description": "d", "risk_tier": tier},
                       "data": {"test": "t.csv", "label": "y", "protected_attributes": {"s": {"privileged": [1]}}}})


def write_policy(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


TIER = "signoff: {model_validator: 1}, max_validity: 365d, recertify_every: 1d"
GOOD = f"""\
version: "2027-01"
skops_trusted_types: [a.Global]
tiers:
  low: {{allowed_artifact_formats: [skops, joblib], {TIER}}}
  medium: {{allowed_artifact_formats: [skops, joblib], skops_trusted_types: [b.MediumOnly], {TIER}}}
  high: {{allowed_artifact_formats: [skops], {TIER}}}
"""

def test_shipped_policy_allows_joblib_only_below_high_tier() -> None:
    p = policy.load_policy(policy.DEFAULT_POLICY_FILE)
    assert p.version == "2026-12.2"
    assert p.sha256 == hashlib.sha256(policy.DEFAULT_POLICY_FILE.read_bytes()).hexdigest()
    assert p.tier("high").allowed_artifact_formats == ["skops"]
    assert p.tier("medium").allowed_artifact_formats == ["skops", "joblib"]
    assert p.tier("low").allowed_artifact_formats == ["skops", "joblib"]
    assert TREE in p.trusted_types("high")  # the adult income demo model needs it


def test_high_tier_joblib_is_refused_naming_field_tier_and_policy() -> None:
    p = policy.load_policy(policy.DEFAULT_POLICY_FILE)
    with pytest.raises(SpecError) as err:
        policy.enforce(spec("high", "joblib"), p)
    assert err.value.problems == [f"model.format: joblib is not allowed for risk tier high by policy 2026-12.2 "
                                  f"sha256 {p.sha256[:8]}…; allowed: skops"]
    policy.enforce(spec("medium", "joblib"), p)
    policy.enforce(spec("high", "skops"), p)


def test_submitter_cannot_trust_types_the_policy_did_not_review(tmp_path: Path) -> None:
    p = policy.load_policy(write_policy(tmp_path / "p.yaml", GOOD))
    policy.enforce(spec("high", "skops", ["a.Global"]), p)
    policy.enforce(spec("medium", "skops", ["a.Global", "b.MediumOnly"]), p)
    evil = "os.system" + "x" * 150
    with pytest.raises(SpecError) as err:
        policy.enforce(spec("high", "joblib", ["b.MediumOnly", evil]), p)
    problems = err.value.problems
    assert problems[0].startswith("model.format: joblib is not allowed for risk tier high by policy 2027-01")
    assert problems[1].startswith("model.trusted_types: b.MediumOnly is not a reviewed skops type for risk tier high "
                                  "in policy 2027-01")
    assert problems[2].startswith("model.trusted_types: os.systemxxx") and "x" * 100 not in problems[2]
    assert "…" in problems[2] and len(problems) == 3


def test_env_override_and_reload_when_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_policy(tmp_path / "p.yaml", GOOD)
    monkeypatch.setenv(policy.POLICY_ENV, str(path))
    first = policy.load_policy()
    assert first.version == "2027-01" and first.source == str(path.resolve())
    assert policy.load_policy() is first  # cached
    write_policy(path, GOOD.replace("2027-01", "2027-02").replace("[skops], sign", "[skops, joblib], sign"))
    os.utime(path, ns=(first_ns := path.stat().st_mtime_ns + 10**9, first_ns))
    second = policy.load_policy()
    assert second.version == "2027-02" and second.sha256 != first.sha256
    policy.enforce(spec("high", "joblib"))  # the edited policy is in force


@pytest.mark.parametrize("body, message", [
    (GOOD + "approve_everything: true\n", r"^policy\.approve_everything: Extra inputs are not permitted"),
    (GOOD.replace('"2027-01"', "2027.01"), r"^policy\.version: Input should be a valid string"),
    ("\n".join(line for line in GOOD.splitlines() if not line.startswith("  high:")) + "\n",
     r"^policy: .*no entry for risk tier\(s\) \['high'\]"),
    (GOOD.replace("[skops], sign", "[], sign"), r"^policy\.tiers\.high\.allowed_artifact_formats: List should have at least 1"),
    (GOOD.replace("[skops], sign", "[pickle], sign"), r"^policy\.tiers\.high\.allowed_artifact_formats\.0: Input should be"),
    (GOOD + 'version: "1999-01"\n', r"^policy: .* is not valid YAML at line 7: duplicate key 'version'"),
    (GOOD.replace("high: {", "high: {mandatory_checks: [fairness.disparate_impact], "),
     r"^policy\.tiers\.high: .*mandatory_checks \['fairness\.disparate_impact'\] have no floor"),
    (GOOD.replace("high: {", "high: {floors: {fairness.bogus: {min: 1}}, "),
     r"^policy\.tiers\.high\.floors\.fairness\.bogus.*unknown check fairness\.bogus; allowed: fairness\.disparate_impact"),
    (GOOD.replace("high: {", "high: {mandatory_checks: [performance.roc_auc], floors: {performance.roc_auc: {min: 0.7}}, "
                              "allow_warning: [performance.roc_auc], "),
     r"both mandatory and allowed as warnings"),
    ("- just\n- a list\n", r"^policy: .* must be a mapping"),
    ("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", r"^policy: .* uses a YAML alias at line 2; aliases are not allowed"),
])
def test_a_malformed_policy_is_one_line_naming_the_field(tmp_path: Path, body: str, message: str) -> None:
    path = write_policy(tmp_path / "p.yaml", body)
    with pytest.raises(policy.PolicyError, match=message) as err:
        policy.load_policy(path)
    assert "\n" not in str(err.value)


def test_missing_oversized_or_binary_policy(tmp_path: Path) -> None:
    with pytest.raises(policy.PolicyError, match=r"^policy: file .*nope\.yaml does not exist \(set MODELCERT_POLICY_FILE\)"):
        policy.load_policy(tmp_path / "nope.yaml")
    big = tmp_path / "big.yaml"
    big.write_text(GOOD + "#" * policy.MAX_POLICY_BYTES)
    with pytest.raises(policy.PolicyError, match=r"bytes; at most 262144 allowed"):
        policy.load_policy(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(GOOD.encode() + "# \xe9t\xe9\n".encode("latin-1"))
    with pytest.raises(policy.PolicyError, match=r"is not UTF-8 text"):
        policy.load_policy(latin)


@pytest.mark.store
def test_register_records_a_policy_refusal_as_error_and_never_unpickles(tmp_path: Path, engine: Any) -> None:
    marker = tmp_path / "ran"
    sha = policy.load_policy(policy.DEFAULT_POLICY_FILE).sha256
    spec_path = joblib_spec(tmp_path, pickle_bytes(_Reduce(marker.write_text, "ran")), tier="high")
    with pytest.raises(SpecError):
        pipeline.register(engine, spec_path, run_key="high/1", triggered_by="alice")
    with reader(engine) as s:
        run = s.execute(select(CertificationRun).where(CertificationRun.run_key == "high/1")).scalar_one()
        status, reasons = run.status, list(run.reasons or [])
    assert status == "error"
    line = f"model.format: joblib is not allowed for risk tier high by policy 2026-12.2 sha256 {sha[:8]}…; allowed: skops"
    assert any(line in r for r in reasons), reasons
    assert not marker.exists()


def test_validate_refuses_high_tier_joblib_before_anything_is_loaded(tmp_path: Path) -> None:
    """``modelcert validate`` and ``register`` share the preflight, which applies the policy first."""
    from modelcert.preflight import preflight

    marker = tmp_path / "ran"
    spec_path = joblib_spec(tmp_path, pickle_bytes(_Reduce(marker.write_text, "ran")), tier="high")
    with pytest.raises(SpecError) as err:
        preflight(spec_path)
    assert [p for p in err.value.problems if p.startswith("model.format: ")] == [
        f"model.format: joblib is not allowed for risk tier high by policy 2026-12.2 "
        f"sha256 {policy.load_policy(policy.DEFAULT_POLICY_FILE).sha256[:8]}…; allowed: skops"]
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- tighten, never loosen
SHIPPED = policy.load_policy(policy.DEFAULT_POLICY_FILE)
LABEL = f"policy 2026-12.2 sha256 {SHIPPED.sha256[:8]}…"


def audit_spec(**sections: Any) -> CertificationSpec:
    """A high-tier predictions audit (no artifact), with ``sections`` replacing the spec's top-level sections."""
    raw: dict[str, Any] = {
        "model": {"name": "m", "version": "1", "owner": "a"},
        "predictions": {"column": "p", "positive": [1]},
        "use_case": {"description": "d", "risk_tier": "high"},
        "data": {"test": "t.csv", "label": "y", "protected_attributes": {"s": {"privileged": [1]}}},
        **sections,
    }
    return parse_spec(raw)


def refused(spec_: CertificationSpec, p: policy.Policy = SHIPPED) -> list[str]:
    with pytest.raises(SpecError) as err:
        policy.enforce(spec_, p)
    return err.value.problems


@pytest.mark.parametrize("checks, line", [
    ({"fairness": {"disparate_impact": {"min": 0.5}}},
     f"checks.fairness.disparate_impact.min: 0.5 is below the high-tier policy floor 0.8 ({LABEL})"),
    ({"fairness": {"disparate_impact": {"max": 1.5}}},
     f"checks.fairness.disparate_impact.max: 1.5 is above the high-tier policy ceiling 1.25 ({LABEL})"),
    ({"fairness": {"disparate_impact": {"between": [0.7, 1.25]}}},
     f"checks.fairness.disparate_impact.between: the lower bound 0.7 is below the high-tier policy floor 0.8 ({LABEL})"),
    ({"fairness": {"equal_opportunity_difference": {"abs_max": 0.3}}},
     f"checks.fairness.equal_opportunity_difference.abs_max: 0.3 is above the high-tier policy ceiling 0.1 ({LABEL})"),
    ({"performance": {"roc_auc": {"min": 0.55}}},
     f"checks.performance.roc_auc.min: 0.55 is below the high-tier policy floor 0.7 ({LABEL})"),
    ({"performance": {"expected_calibration_error": {"max": 0.2}}},
     f"checks.performance.expected_calibration_error.max: 0.2 is above the high-tier policy ceiling 0.1 ({LABEL})"),
    ({"data_quality": {"null_fraction": {"max": 0.5}}},
     f"checks.data_quality.null_fraction.max: 0.5 is above the high-tier policy ceiling 0.05 ({LABEL})"),
    ({"robustness": {"min_robust_accuracy": {"min": 0.0}}},
     f"checks.robustness.min_robust_accuracy.min: 0 is below the high-tier policy floor 0.5 ({LABEL})"),
    ({"drift": {"max_drifted_share": 0.5}},
     f"checks.drift.max_drifted_share: 0.5 is above the high-tier policy ceiling 0.3 ({LABEL})"),
    ({"performance": {"roc_auc": {"min": 0.8, "required": False}}},
     f"checks.performance.roc_auc.required: false is not allowed for the high tier: the policy does not allow a "
     f"warning for performance.roc_auc ({LABEL}; warnings allowed for: data_quality.duplicate_fraction, "
     "data_quality.leakage_fraction, performance.brier_score, performance.latency_p50_ms, "
     "performance.latency_p95_ms, performance.model_size_mb, fairness.average_odds_difference, "
     "fairness.base_rate_difference, explainability.max_proxy_auc, explainability.max_weak_slices, "
     "explainability.accuracy_max_drop)"),
    ({"drift": {"required": False}},
     f"checks.drift.required: false switches off drift, a mandatory stage for the high tier ({LABEL})"),
    ({"compliance": {"require": ["owner"]}},
     "checks.compliance.require: omits intended_use, risk_tier, data_retention_days, consent_basis, model_description, "
     "algorithm_rationale, limitations, ethical_considerations, training_data_description, which the "
     f"high-tier policy requires ({LABEL})"),
])
def test_each_kind_of_loosening_is_refused_with_its_line(checks: dict[str, Any], line: str) -> None:
    assert refused(audit_spec(checks=checks)) == [line]


def test_recertification_overrides_may_not_loosen_or_drop_a_mandatory_check() -> None:
    recert = {"current_data": "c.csv", "labels_available": True,
              "checks": {"fairness": {"disparate_impact": None, "equal_opportunity_difference": {"abs_max": 0.5}},
                         "drift": {"max_drifted_share": 0.6}}}
    assert refused(audit_spec(recertification=recert)) == [
        f"recertification.checks.fairness.disparate_impact: null drops fairness.disparate_impact, a mandatory check "
        f"of the high-tier policy ({LABEL})",
        f"recertification.checks.fairness.equal_opportunity_difference.abs_max: 0.5 is above the high-tier policy "
        f"ceiling 0.1 ({LABEL})",
        f"recertification.checks.drift.max_drifted_share: 0.6 is above the high-tier policy ceiling 0.3 ({LABEL})"]


def test_quorum_validity_and_unknown_tier(tmp_path: Path) -> None:
    two = policy.load_policy(write_policy(tmp_path / "p.yaml", GOOD.replace(
        "high: {allowed_artifact_formats: [skops], signoff: {model_validator: 1}",
        "high: {allowed_artifact_formats: [skops], signoff: {model_validator: 2, risk_officer: 1}")))
    assert refused(audit_spec(signoff={"required": {"model_validator": 1}}), two) == [
        f"signoff.required.model_validator: 1 is below the high-tier policy quorum 2 ({two.label})"]
    assert refused(audit_spec(signoff={"required": {"model_validator": 1, "risk_officer": 1}, "policy_merged": True})) == [
        "signoff.policy_merged: set by modelcert when a run is registered, not by a spec; remove it"]
    assert refused(audit_spec(certificate={"valid_for": "365d"})) == [
        f"certificate.valid_for: 365d is above the high-tier policy maximum 180d ({LABEL})"]
    assert refused(audit_spec(use_case={"description": "d", "risk_tier": "extreme"})) == [
        f"use_case.risk_tier: 'extreme' is not allowed; the risk tiers of {LABEL} are high, low, medium"]
    # More is always allowed: the spec's extra role and higher count are kept, the policy's roles added.
    stricter = audit_spec(signoff={"required": {"model_validator": 2, "legal": 1}})
    assert policy.effective(stricter, SHIPPED).required_approvals == {"model_validator": 2, "risk_officer": 1,
                                                                      "legal": 1}


def test_tightening_is_kept_and_omitted_mandatory_checks_get_the_floor() -> None:
    s = audit_spec(checks={"performance": {"roc_auc": {"min": 0.9}},
                           "fairness": {"disparate_impact": {"min": 0.9},
                                        "average_odds_difference": {"abs_max": 0.2, "required": False}},
                           "drift": {"max_drifted_share": 0.1}},
                   certificate={"valid_for": "30d"})
    policy.enforce(s, SHIPPED)
    eff = policy.effective(s, SHIPPED)
    perf, fair = eff.checks.performance, eff.checks.fairness
    assert perf["roc_auc"].min == 0.9 and perf["roc_auc"].required  # the spec's tighter bound
    assert perf["expected_calibration_error"].max == 0.1  # omitted mandatory check: the floor
    assert (fair["disparate_impact"].min, fair["disparate_impact"].max) == (0.9, 1.25)  # spec's min, floor's max
    assert fair["equal_opportunity_difference"].abs_max == 0.1
    assert fair["average_odds_difference"].required is False  # a warning the high tier allows
    assert eff.checks.drift.max_drifted_share == 0.1 and eff.checks.drift.required is True
    assert eff.checks.robustness.min_robust_accuracy.min == 0.6  # the schema default is already stricter
    assert eff.certificate.valid_for.days == 30
    assert eff.signoff.policy_merged and eff.required_approvals == {"model_validator": 1, "risk_officer": 1}
    # The effective spec survives storage (JSON) and still complies: applying the policy again changes nothing.
    again = parse_spec(eff.model_dump(mode="json"))
    assert again.checks == eff.checks and again.required_approvals == eff.required_approvals


def test_defaults_looser_than_a_floor_are_raised_silently_and_validity_capped(tmp_path: Path) -> None:
    strict = policy.load_policy(write_policy(tmp_path / "p.yaml", GOOD.replace(
        "high: {allowed_artifact_formats: [skops], signoff: {model_validator: 1}, max_validity: 365d",
        "high: {allowed_artifact_formats: [skops], signoff: {model_validator: 1}, max_validity: 30d").replace(
        "high: {", "high: {mandatory_checks: [data_quality.null_fraction], floors: {data_quality.null_fraction: "
                   "{max: 0.01}, data_quality.duplicate_fraction: {max: 0.02}}, ")))
    eff = policy.effective(audit_spec(), strict)  # the spec wrote none of these: no refusal
    dq = eff.checks.data_quality
    assert dq.null_fraction.max == 0.01 and dq.duplicate_fraction.max == 0.02
    assert dq.duplicate_fraction.required is True  # the schema's warning default is not a warning this tier allows
    assert eff.certificate.valid_for.days == 30  # the schema's 90d default, capped at the tier's maximum
    assert refused(audit_spec(checks={"data_quality": {"duplicate_fraction": {"max": 0.01, "required": False}}}),
                   strict)[0].startswith("checks.data_quality.duplicate_fraction.required: false is not allowed")


def test_a_policy_may_add_a_tier_that_specs_then_accept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert.spec import load_spec

    path = write_policy(tmp_path / "p.yaml", GOOD + "  critical: {allowed_artifact_formats: [skops], "
                                                    "signoff: {model_validator: 2, risk_officer: 1}, "
                                                    "max_validity: 30d, recertify_every: 1d}\n")
    monkeypatch.setenv(policy.POLICY_ENV, str(path))
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("model: {name: m, version: '1', owner: a}\npredictions: {column: p, positive: [1]}\n"
                         "use_case: {description: d, risk_tier: critical}\n"
                         "data: {test: t.csv, label: y, protected_attributes: {s: {privileged: [1]}}}\n")
    loaded, _ = load_spec(spec_file)
    assert policy.effective(loaded).required_approvals == {"model_validator": 2, "risk_officer": 1}
    spec_file.write_text(spec_file.read_text().replace("critical", "severe"))
    with pytest.raises(SpecError, match=r"use_case\.risk_tier: 'severe' is not allowed; the risk tiers of policy "
                                        r"2027-01 sha256 \w{8}… are critical, high, low, medium"):
        load_spec(spec_file)


# ------------------------------------------------------------------------------------------- robustness evidence
def _robustness(status: str, attacks_run: list[str], reason: str | None = None) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(status=status, reason=reason,
                           summary={"attacks_run": attacks_run, "attacks_not_applicable": {"fgsm": "no gradients"}})


def test_robustness_without_an_executed_attack_fails_the_tier_minimum() -> None:
    from modelcert.policy_rules import gate_failures

    model = spec("high", "skops")
    assert gate_failures(model, {"robustness": _robustness("passed", [])}, SHIPPED) == [
        f"robustness: attacks_executed: 0 attack(s) ran on the model; the high-tier policy requires at least 1 "
        f"({LABEL}); fgsm: no gradients"]
    assert gate_failures(model, {"robustness": _robustness("not_applicable", [], "no numeric feature")}, SHIPPED)[0] \
        .endswith("requires at least 1 (" + LABEL + "); no numeric feature")
    assert gate_failures(model, {"robustness": _robustness("passed", ["hop_skip_jump"])}, SHIPPED) == []
    assert gate_failures(spec("medium", "skops"), {"robustness": _robustness("passed", [])}, SHIPPED) == []
    # A predictions-only audit has no model to attack: exempt.
    assert gate_failures(audit_spec(), {"robustness": _robustness("not_applicable", [])}, SHIPPED) == []
    assert refused(spec("high", "skops").model_copy(update={"checks": parse_spec(
        {**spec("high", "skops").model_dump(mode="json"), "checks": {"robustness": {"attacks": []}}}).checks})) == [
        f"checks.robustness.attacks: empty, but the high-tier policy requires at least 1 attack executed on the "
        f"model ({LABEL})"]


# ------------------------------------------------------------------------------------------- validate, register, apply
def rewrite(spec_path: Path, name: str, change: Any) -> Path:
    """A copy of the spec at ``spec_path`` (same folder, so its data paths hold) with ``change(raw)`` applied."""
    import yaml

    raw = yaml.safe_load(spec_path.read_text())
    change(raw)
    out = spec_path.parent / name
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def test_validate_exits_non_zero_naming_check_value_floor_and_policy(spec_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main

    loose = rewrite(spec_path, "loose.yaml", lambda r: r.setdefault("checks", {}).update(
        fairness={"disparate_impact": {"min": 0.5}}))
    assert main(["validate", str(loose)]) == 2
    err = capsys.readouterr().err
    assert f"checks.fairness.disparate_impact.min: 0.5 is below the high-tier policy floor 0.8 ({LABEL})" in err
    assert "Traceback" not in err
    assert main(["validate", str(spec_path), "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["required_approvals"] == {"model_validator": 1, "risk_officer": 1}


@pytest.fixture
def policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped policy as the configured policy file (tests never write the shipped one)."""
    path = tmp_path / "config" / "policy.yaml"
    path.parent.mkdir()
    path.write_bytes(policy.DEFAULT_POLICY_FILE.read_bytes())
    monkeypatch.setenv(policy.POLICY_ENV, str(path))
    return path


def _policy_events(engine: Any) -> list[Any]:
    from modelcert.db.models import AuditEvent

    with reader(engine) as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.action == "policy_applied")
                              .order_by(AuditEvent.id)).scalars())


@pytest.mark.store
def test_register_stores_the_effective_spec_the_submitted_text_and_the_policy(spec_path: Path, engine: Any,
                                                                              policy_file: Path) -> None:
    tight = rewrite(spec_path, "tight.yaml", lambda r: r.setdefault("checks", {}).update(
        performance={"roc_auc": {"min": 0.75}}, fairness={"disparate_impact": {"min": 0.9, "max": 1.1}}))
    reg = pipeline.register(engine, tight, run_key="tight/1", triggered_by="alice")
    with reader(engine) as s:
        run = s.get(CertificationRun, reg.run_id)
        stored, text, evidence, digest = run.spec, run.spec_text, run.evidence, run.evidence_digest
    perf, fair = stored["checks"]["performance"], stored["checks"]["fairness"]
    assert perf["roc_auc"]["min"] == 0.75  # tightened by the spec
    assert perf["expected_calibration_error"]["max"] == 0.1  # omitted mandatory check: the floor
    assert (fair["disparate_impact"]["min"], fair["disparate_impact"]["max"]) == (0.9, 1.1)
    assert fair["equal_opportunity_difference"]["abs_max"] == 0.1
    assert stored["signoff"]["required"] == {"model_validator": 1, "risk_officer": 1}
    assert text == tight.read_text() and "expected_calibration_error" not in text  # the submitted text, as evidence
    assert evidence["policy"] == {"version": "2026-12.2", "sha256": SHIPPED.sha256}
    # The digest covers the policy: the same files judged under another policy are different evidence.
    from modelcert.evidence import Evidence

    assert Evidence(evidence["spec_sha256"], evidence["files"], evidence["policy"]).digest == digest
    assert Evidence(evidence["spec_sha256"], evidence["files"]).digest != digest
    [initial] = _policy_events(engine)  # first use of a fresh database: the file in force, recorded
    assert initial.actor == "modelcert (initial)" and initial.entity_id == SHIPPED.sha256
    assert initial.payload["text"] == policy_file.read_text() and initial.payload["previous_sha256"] is None
    # Shown wherever a run is: status, report, the runs list and the ops view (API JSON and pages read these).
    from modelcert import report

    shown = f"2026-12.2 (sha256 {SHIPPED.sha256[:8]}…)"
    assert report.run_report(engine, reg.run_id)["policy"] == shown
    assert [r["policy"] for r in report.list_runs(engine)] == [shown]
    assert [m["latest_run"]["policy"] for m in report.model_overview(engine)] == [shown]


@pytest.mark.store
def test_a_hand_edited_policy_file_refuses_runs_until_applied(spec_path: Path, engine: Any, db_url: str,
                                                              policy_file: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main
    from modelcert.policy_store import ensure_in_force

    pipeline.register(engine, spec_path, run_key="before/1", triggered_by="alice")
    original = policy_file.read_bytes()
    edited = original.replace(b"roc_auc: {min: 0.7}", b"roc_auc: {min: 0.5}")
    assert edited != original
    policy_file.write_bytes(edited)
    with pytest.raises(policy.PolicyError) as err:
        pipeline.register(engine, spec_path, run_key="after/1", triggered_by="alice")
    line = str(err.value)
    assert "\n" not in line and "was changed without `modelcert policy apply`" in line
    assert f"not the last applied {LABEL} (by modelcert (initial) at " in line
    with reader(engine) as s:
        run = s.execute(select(CertificationRun).where(CertificationRun.run_key == "after/1")).scalar_one()
        assert run.status == "error" and run.reasons == [line]

    # Not by a non-admin: bob validates models, he does not set the bar.
    assert main(["policy", "apply", str(policy_file), "--user", "bob", "--database-url", db_url]) == 2
    assert "does not hold the policy_admin role" in capsys.readouterr().err
    assert len(_policy_events(engine)) == 1
    # erin (policy_admin in roles.yaml) applies it: audited with the old and new sha256 and the text.
    new_sha = hashlib.sha256(edited).hexdigest()
    assert main(["policy", "apply", str(policy_file), "--user", "erin", "--database-url", db_url, "--json"]) == 0
    capsys.readouterr()
    _initial, applied = _policy_events(engine)
    assert applied.actor == "erin" and applied.entity_id == new_sha
    assert applied.payload["previous_sha256"] == SHIPPED.sha256 and applied.payload["sha256"] == new_sha
    assert applied.payload["version"] == "2026-12.2" and applied.payload["text"] == edited.decode()
    assert ensure_in_force(engine).sha256 == new_sha
    pipeline.register(engine, spec_path, run_key="after/2", triggered_by="alice")  # runs start again
    # Applying the policy in force again records nothing.
    assert main(["policy", "apply", str(policy_file), "--user", "erin", "--database-url", db_url]) == 0
    assert len(_policy_events(engine)) == 2
    import json

    capsys.readouterr()
    assert main(["policy", "show", "--database-url", db_url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["in_force"] is True and shown["last_applied"] == {"version": "2026-12.2", "sha256": new_sha,
                                                                   "by": "erin", "at": applied.ts.isoformat(
                                                                       timespec="seconds")}
    policy_file.write_bytes(original)  # edited by hand again: show says so
    assert main(["policy", "show", "--database-url", db_url]) == 0
    assert "runs refuse to start until it is applied" in capsys.readouterr().out


@pytest.mark.store
def test_policy_apply_writes_a_new_file_atomically_and_show_reports_it(engine: Any, db_url: str, policy_file: Path,
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from modelcert.cli import main

    new = tmp_path / "next.yaml"
    new.write_text(policy_file.read_text().replace('version: "2026-12.2"', 'version: "2027-03"'))
    bad = tmp_path / "bad.yaml"
    bad.write_text(policy_file.read_text().replace("max_validity: 180d", "max_validity: forever", 1))
    assert main(["policy", "apply", str(bad), "--user", "erin", "--database-url", db_url]) == 2
    assert "max_validity" in capsys.readouterr().err and policy_file.read_bytes() == policy.DEFAULT_POLICY_FILE.read_bytes()
    assert main(["policy", "apply", str(new), "--user", "erin", "--database-url", db_url]) == 0
    capsys.readouterr()
    assert policy_file.read_text() == new.read_text()
    assert not list(policy_file.parent.glob(".policy-*"))  # no temporary file left behind
    assert main(["policy", "show", "--database-url", db_url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "2027-03" and shown["in_force"] is True
    assert shown["last_applied"]["by"] == "erin" and shown["last_applied"]["sha256"] == shown["sha256"]
    assert shown["tiers"]["high"]["floors"]["fairness.disparate_impact"] == "in [0.8, 1.25]"
    # The previous policy (none applied before: nothing recorded as previous) and the new one are both reproducible.
    [applied] = _policy_events(engine)
    assert applied.payload["previous_sha256"] is None and applied.payload["text"] == new.read_text()


def test_recertification_cadence_skips_a_certificate_checked_within_it() -> None:
    from datetime import datetime, timedelta

    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert policy.recertification_due("high", None, now)
    assert policy.recertification_due("high", now - timedelta(hours=23, minutes=30), now)  # daily, within the slack
    assert not policy.recertification_due("high", now - timedelta(hours=12), now)
    assert not policy.recertification_due("medium", now - timedelta(days=6), now)
    assert policy.recertification_due("medium", now - timedelta(days=7), now)


@pytest.mark.store
def test_status_and_report_name_the_policy(spec_path: Path, engine: Any, db_url: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main

    reg = pipeline.register(engine, spec_path, run_key="shown/1", triggered_by="alice")
    capsys.readouterr()
    assert main(["status", reg.run_id, "--database-url", db_url]) == 0
    assert f"judged under risk policy 2026-12.2 (sha256 {SHIPPED.sha256[:8]}…)" in capsys.readouterr().out
    assert main(["report", reg.run_id, "--database-url", db_url]) == 0
    assert f"risk policy 2026-12.2 (sha256 {SHIPPED.sha256[:8]}…)" in capsys.readouterr().out


@pytest.mark.store
@pytest.mark.usefixtures("fake_stages")
def test_a_recertification_records_the_policy_its_certification_was_judged_under(engine: Any, tmp_path: Path) -> None:
    from tests.modelcert.test_recertify import DS, LABELS, certify, make_spec, recert, write_prod

    cert = certify(engine, make_spec(tmp_path, "good", LABELS))
    write_prod(tmp_path / "good" / "spec.yaml", f"batch_{DS}.csv", 0.8)
    out = recert(engine, cert)
    with reader(engine) as s:
        run = s.get(CertificationRun, out["run_id"])
        certified = s.get(CertificationRun, cert["run_id"])
        assert run.kind == "recertification"
        assert run.evidence["policy"] == certified.evidence["policy"] == {"version": "2026-12.2",
                                                                          "sha256": SHIPPED.sha256}


@pytest.mark.store
@pytest.mark.parametrize("attacks_run, status", [([], "rejected"), (["hop_skip_jump"], "awaiting_signoff")])
def test_the_gate_rejects_a_model_no_attack_ran_on(engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   attacks_run: list[str], status: str) -> None:
    """Every stage passes its checks; the robustness result says which attacks ran. None → the high tier's
    minimum robustness evidence is a failed mandatory check at the gate, and the run is rejected."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from modelcert.stages import STAGE_NAMES
    from modelcert.stages.base import Check, outcome
    from modelcert.thresholds import Threshold
    from tests.conftest import write_synthetic

    class Stage:
        def __init__(self, name: str) -> None:
            self.name, self.library = name, ""

        def run(self, ctx: Any) -> Any:
            summary = {"attacks_run": attacks_run, "attacks_not_applicable": {"fgsm": "no gradients here"}} \
                if self.name == "robustness" else {}
            return outcome(self.name, [Check.judged("score", 0.9, Threshold(min=0.5))], library="", summary=summary)

    monkeypatch.setattr(pipeline, "get_stage", Stage)
    df = pd.DataFrame({"x": [float(i % 7) for i in range(40)], "sex": ["m", "f"] * 20, "y": [0, 1, 1, 0] * 10})
    model = LogisticRegression().fit(df[["x"]], df["y"])
    path, _ = write_synthetic(tmp_path, {"test": df}, {
        "model": {"features": ["x"]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}}}, model)
    reg = pipeline.register(engine, path, run_key=f"attacks/{len(attacks_run)}", triggered_by="alice")
    for name in STAGE_NAMES:
        pipeline.run_stage(engine, reg.run_id, name)
    decision = pipeline.decide(engine, reg.run_id)
    assert decision["status"] == status, decision
    line = (f"robustness: attacks_executed: 0 attack(s) ran on the model; the high-tier policy requires at least 1 "
            f"({LABEL}); fgsm: no gradients here")
    assert decision["reasons"] == ([line] if status == "rejected" else [])
