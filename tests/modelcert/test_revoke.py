"""Revoking a certificate: role holders only, with a reason, audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelcert import pipeline, report
from modelcert.errors import SignoffError
from modelcert.governance import Identity, record_decision, revoke_certificate
from tests.lifecycle import ROLES, digest_shown, run_all

pytestmark = pytest.mark.store


@pytest.fixture
def cert(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> dict[str, Any]:
    run_id = run_all(engine, spec_path)
    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        record_decision(engine, run_id, Identity(who, "t"), role=role, decision="approve", roles=ROLES,
                        evidence_digest=digest_shown(engine, run_id))
    return pipeline.promote(engine, run_id)


def test_revoke_by_role_holder_with_reason(engine: Any, cert: dict[str, Any]) -> None:
    with pytest.raises(SignoffError, match="needs a reason"):
        revoke_certificate(engine, cert["certificate_id"], Identity("dave", "t"), reason=" ", roles=ROLES)
    with pytest.raises(SignoffError, match="holds no certification role") as exc:
        revoke_certificate(engine, cert["certificate_id"], Identity("mallory", "t"), reason="x", roles=ROLES)
    assert exc.value.code == "forbidden"
    out = revoke_certificate(engine, cert["certificate_id"][:8], Identity("dave", "t"), reason="model misused", roles=ROLES)
    assert out["status"] == "revoked" and out["previous_status"] == "valid"
    [listed] = report.list_certificates(engine)
    assert listed["status"] == "revoked" and "model misused" in listed["status_reason"]
    with pytest.raises(SignoffError, match="already revoked"):
        revoke_certificate(engine, cert["certificate_id"], Identity("dave", "t"), reason="again", roles=ROLES)
    events = report.run_report(engine, cert["run_id"])["audit"]
    assert [e["action"] for e in events][-1] == "certificate_revoked"
