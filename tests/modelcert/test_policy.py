"""The risk policy: the institution sets the bar (artifact formats, reviewed skops types), never the submitter."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelcert import pipeline, policy
from modelcert.db.models import CertificationRun
from modelcert.db.session import reader
from modelcert.errors import SpecError
from modelcert.spec import CertificationSpec, parse_spec
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


GOOD = """\
version: "2027-01"
skops_trusted_types: [a.Global]
tiers:
  low: {allowed_artifact_formats: [skops, joblib]}
  medium: {allowed_artifact_formats: [skops, joblib], skops_trusted_types: [b.MediumOnly]}
  high: {allowed_artifact_formats: [skops]}
"""


def test_shipped_policy_allows_joblib_only_below_high_tier() -> None:
    p = policy.load_policy(policy.DEFAULT_POLICY_FILE)
    assert p.version == "2026-12"
    assert p.sha256 == hashlib.sha256(policy.DEFAULT_POLICY_FILE.read_bytes()).hexdigest()
    assert p.tier("high").allowed_artifact_formats == ["skops"]
    assert p.tier("medium").allowed_artifact_formats == ["skops", "joblib"]
    assert p.tier("low").allowed_artifact_formats == ["skops", "joblib"]
    assert TREE in p.trusted_types("high")  # the adult income demo model needs it


def test_high_tier_joblib_is_refused_naming_field_tier_and_policy() -> None:
    p = policy.load_policy(policy.DEFAULT_POLICY_FILE)
    with pytest.raises(SpecError) as err:
        policy.enforce(spec("high", "joblib"), p)
    assert err.value.problems == [f"model.format: joblib is not allowed for risk tier high by policy 2026-12 "
                                  f"(sha256 {p.sha256[:8]}…); allowed: skops"]
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
    write_policy(path, GOOD.replace("2027-01", "2027-02").replace("[skops]", "[skops, joblib]"))
    os.utime(path, ns=(first_ns := path.stat().st_mtime_ns + 10**9, first_ns))
    second = policy.load_policy()
    assert second.version == "2027-02" and second.sha256 != first.sha256
    policy.enforce(spec("high", "joblib"))  # the edited policy is in force


@pytest.mark.parametrize("body, message", [
    (GOOD + "approve_everything: true\n", r"^policy\.approve_everything: Extra inputs are not permitted"),
    (GOOD.replace('"2027-01"', "2027.01"), r"^policy\.version: Input should be a valid string"),
    (GOOD.replace("  high: {allowed_artifact_formats: [skops]}\n", ""),
     r"^policy: .*no entry for risk tier\(s\) \['high'\]"),
    (GOOD.replace("[skops]}", "[]}"), r"^policy\.tiers\.high\.allowed_artifact_formats: List should have at least 1"),
    (GOOD.replace("[skops]}", "[pickle]}"), r"^policy\.tiers\.high\.allowed_artifact_formats\.0: Input should be"),
    (GOOD + 'version: "1999-01"\n', r"^policy: .* is not valid YAML at line 7: duplicate key 'version'"),
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
    line = f"model.format: joblib is not allowed for risk tier high by policy 2026-12 (sha256 {sha[:8]}…); allowed: skops"
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
        f"model.format: joblib is not allowed for risk tier high by policy 2026-12 "
        f"(sha256 {policy.load_policy(policy.DEFAULT_POLICY_FILE).sha256[:8]}…); allowed: skops"]
    assert not marker.exists()
