"""Sign-off rules: every refusal has its own test, and the quorum counts people, roles and evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelcert import pipeline
from modelcert.errors import SignoffError
from modelcert.governance import Identity, load_roles, record_decision
from tests.lifecycle import ROLES, digest_shown, run_all

pytestmark = pytest.mark.store


@pytest.fixture
def waiting(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> str:
    return run_all(engine, spec_path)


def approve(engine: Any, run_id: str, who: str, role: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("evidence_digest", digest_shown(engine, run_id))
    return record_decision(engine, run_id, Identity(who, "test"), role=role, decision="approve", roles=ROLES, **kw)


def test_submitter_cannot_approve(engine: Any, waiting: str) -> None:
    roles = {"model_validator": {"alice"}, "risk_officer": {"dave"}}
    with pytest.raises(SignoffError, match="four-eyes") as exc:
        record_decision(engine, waiting, Identity("alice", "t"), role="model_validator", decision="approve",
                        roles=roles,
                        evidence_digest=digest_shown(engine, waiting))
    assert exc.value.code == "four_eyes"


def test_role_not_held_is_refused(engine: Any, waiting: str) -> None:
    with pytest.raises(SignoffError, match="does not hold the role 'risk_officer'") as exc:
        approve(engine, waiting, "bob", "risk_officer")
    assert exc.value.code == "forbidden"


def test_role_not_required_is_refused(engine: Any, waiting: str) -> None:
    with pytest.raises(SignoffError, match="not required") as exc:
        approve(engine, waiting, "bob", "legal")
    assert exc.value.code == "role_not_required"


def test_one_person_counts_once(engine: Any, waiting: str) -> None:
    roles = {"model_validator": {"bob"}, "risk_officer": {"bob"}}
    record_decision(engine, waiting, Identity("bob", "t"), role="model_validator", decision="approve", roles=roles,
                    evidence_digest=digest_shown(engine, waiting))
    with pytest.raises(SignoffError, match="already approved") as exc:
        record_decision(engine, waiting, Identity("bob", "t"), role="risk_officer", decision="approve", roles=roles,
                        evidence_digest=digest_shown(engine, waiting))
    assert exc.value.code == "duplicate"
    assert pipeline.signoff_state(engine, waiting).missing == {"risk_officer": 1}


def test_other_evidence_digest_is_refused(engine: Any, waiting: str) -> None:
    with pytest.raises(SignoffError, match="not this run's") as exc:
        approve(engine, waiting, "bob", "model_validator", evidence_digest="f" * 64)
    assert exc.value.code == "evidence_mismatch"


def test_run_not_awaiting_is_refused(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    verdicts["fairness"] = "failed"
    rejected = run_all(engine, spec_path, key="rej")
    with pytest.raises(SignoffError, match="rejected, not awaiting sign-off") as exc:
        approve(engine, rejected, "bob", "model_validator")
    assert exc.value.code == "not_awaiting"


def test_decline_needs_reason_and_ends_the_run(engine: Any, waiting: str) -> None:
    with pytest.raises(SignoffError, match="needs a reason"):
        record_decision(engine, waiting, Identity("dave", "t"), role="risk_officer", decision="decline", roles=ROLES,
                        evidence_digest=digest_shown(engine, waiting))
    out = record_decision(engine, waiting, Identity("dave", "t"), role="risk_officer", decision="decline",
                          comment="calibration not convincing", roles=ROLES,
                          evidence_digest=digest_shown(engine, waiting))
    assert out["run_status"] == "declined"
    state = pipeline.signoff_state(engine, waiting)
    assert state.state == "declined" and "calibration" in state.detail
    with pytest.raises(SignoffError, match="declined, not awaiting"):
        approve(engine, waiting, "bob", "model_validator")


def test_roles_file_is_configuration(tmp_path: Path) -> None:
    p = tmp_path / "roles.yaml"
    p.write_text("roles:\n  model_validator: [zoe]\n")
    assert load_roles(p) == {"model_validator": {"zoe"}}
    p.write_text("users: []\n")
    with pytest.raises(SignoffError, match="expected a mapping under 'roles'"):
        load_roles(p)


def test_the_digest_is_required_and_never_filled_in(engine: Any, waiting: str) -> None:
    """An approval names the evidence its approver saw: no digest, or a blank one, is refused naming the field."""
    for blank in ("", "   "):
        with pytest.raises(SignoffError, match="evidence_digest: required") as exc:
            approve(engine, waiting, "bob", "model_validator", evidence_digest=blank)
        assert exc.value.code == "invalid"
    with pytest.raises(TypeError, match="evidence_digest"):
        record_decision(engine, waiting, Identity("bob", "t"), role="model_validator", decision="approve",  # type: ignore[call-arg]
                        roles=ROLES)
    assert pipeline.signoff_state(engine, waiting).missing == {"model_validator": 1, "risk_officer": 1}
