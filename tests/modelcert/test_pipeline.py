"""The run lifecycle against a real PostgreSQL, with small fake stages (the real ones have their own tests)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from modelcert import pipeline
from modelcert.db.models import AuditEvent, Certificate, CertificationRun, CheckResult, StageResult
from modelcert.db.session import reader
from modelcert.errors import ModelcertError, SpecError
from modelcert.governance import Identity, record_decision
from modelcert.stages import STAGE_NAMES
from modelcert.stages.base import StageOutcome
from tests.lifecycle import ROLES, digest_shown, run_all

pytestmark = pytest.mark.store
def count(engine: Any, model: Any, **where: Any) -> int:
    with reader(engine) as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int(s.execute(q).scalar_one())


def test_pass_then_signoff_then_certificate(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    run_id = run_all(engine, spec_path)
    state = pipeline.signoff_state(engine, run_id)
    assert state.state == "waiting" and state.missing == {"model_validator": 1, "risk_officer": 1}
    with pytest.raises(ModelcertError, match="lacks approvals"):
        pipeline.promote(engine, run_id)
    record_decision(engine, run_id, Identity("bob", "test"), role="model_validator", decision="approve", roles=ROLES,
                    evidence_digest=digest_shown(engine, run_id))
    assert pipeline.signoff_state(engine, run_id).missing == {"risk_officer": 1}
    record_decision(engine, run_id, Identity("dave", "test"), role="risk_officer", decision="approve", roles=ROLES,
                    evidence_digest=digest_shown(engine, run_id))
    assert pipeline.signoff_state(engine, run_id).state == "approved"
    cert = pipeline.promote(engine, run_id)
    assert cert["status"] == "valid"
    assert cert["valid_until"] > cert["valid_from"]
    assert pipeline.promote(engine, run_id)["certificate_id"] == cert["certificate_id"]  # idempotent
    assert count(engine, Certificate) == 1
    with reader(engine) as s:
        assert s.get(CertificationRun, run_id).status == "certified"


def test_failed_check_rejects_with_reasons(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    verdicts["fairness"] = "failed"
    run_id = run_all(engine, spec_path)
    decision = pipeline.decide(engine, run_id)
    assert decision["status"] == "rejected"
    assert any(r.startswith("fairness: score[all]") for r in decision["reasons"])
    with pytest.raises(ModelcertError, match="rejected"):
        pipeline.promote(engine, run_id)


def test_stage_error_makes_run_error(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    verdicts["drift"] = "error"
    verdicts["robustness"] = "not_applicable"
    run_id = run_all(engine, spec_path)
    decision = pipeline.decide(engine, run_id)
    assert decision["status"] == "error"
    assert any("drift: drift: broken input" in r for r in decision["reasons"])
    with reader(engine) as s:
        statuses = dict(s.execute(select(StageResult.stage, StageResult.status)).all())
    assert statuses["robustness"] == "not_applicable" and statuses["drift"] == "error"


def test_missing_stage_result_is_an_error(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    reg = pipeline.register(engine, spec_path, run_key="k", triggered_by="alice")
    pipeline.run_stage(engine, reg.run_id, "performance")
    decision = pipeline.decide(engine, reg.run_id)
    assert decision["status"] == "error"
    assert any("fairness: no result recorded" in r for r in decision["reasons"])


def test_rerunning_everything_leaves_one_result_set_per_stage(engine: Any, spec_path: Path,
                                                              verdicts: dict[str, str]) -> None:
    run_id = run_all(engine, spec_path, key="dag/run1")
    checks_before = count(engine, CheckResult)
    again = run_all(engine, spec_path, key="dag/run1")  # a cleared and re-run DAG run
    assert again == run_id
    pipeline.run_stage(engine, run_id, "fairness")  # one task re-run on its own
    assert count(engine, CertificationRun) == 1
    assert count(engine, StageResult) == len(STAGE_NAMES)
    assert count(engine, CheckResult) == checks_before
    assert pipeline.decide(engine, run_id)["status"] == "awaiting_signoff"


def test_unexpected_stage_exception_is_recorded_then_raised(engine: Any, spec_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom:
        name, library = "performance", ""

        def run(self, ctx: Any) -> StageOutcome:
            raise ZeroDivisionError("boom")

    monkeypatch.setattr(pipeline, "get_stage", lambda name: Boom())
    reg = pipeline.register(engine, spec_path, run_key="k2")
    with pytest.raises(ZeroDivisionError):
        pipeline.run_stage(engine, reg.run_id, "performance")
    with reader(engine) as s:
        sr = s.execute(select(StageResult)).scalar_one()
    assert sr.status == "error" and "ZeroDivisionError" in (sr.reason or "")


def test_invalid_spec_is_recorded_as_error_run(engine: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: x, version: '1', owner: a, colour: red}\n")
    with pytest.raises(SpecError, match="model.colour: unknown key"):
        pipeline.register(engine, bad, run_key="dag/bad", triggered_by="alice")
    with reader(engine) as s:
        run = s.execute(select(CertificationRun)).scalar_one()
    assert run.status == "error" and "model.colour" in run.reasons[0]
    assert count(engine, AuditEvent, action="run_error") == 1


def test_hash_mismatch_is_recorded_as_error_and_nothing_else_changes(engine: Any, spec_path: Path,
                                                                     verdicts: dict[str, str]) -> None:
    good = run_all(engine, spec_path, key="dag/good")
    text = spec_path.read_text()
    tampered = spec_path.with_name("tampered.yaml")
    tampered.write_text(text.replace("data:", "data:\n  sha256: {test: " + "0" * 64 + "}", 1))
    with pytest.raises(ModelcertError, match="data.sha256.test"):
        pipeline.register(engine, tampered, run_key="dag/tampered")
    with reader(engine) as s:
        statuses = dict(s.execute(select(CertificationRun.run_key, CertificationRun.status)).all())
    assert statuses == {"dag/good": "awaiting_signoff", "dag/tampered": "error"}
    assert count(engine, StageResult, run_id=good) == len(STAGE_NAMES)


def test_data_changed_after_registration_is_a_stage_error(engine: Any, spec_path: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setenv("MODELCERT_CACHE_DIR", str(tmp_path / "cache"))
    reg = pipeline.register(engine, spec_path, run_key="k3")
    (spec_path.parent / "test.csv").write_text("x,sex,y,pred\n1,m,0,1\n2,f,1,0\n")
    out = pipeline.run_stage(engine, reg.run_id, "compliance")
    # The evaluation cache holds the registered bytes (verified by their sha256): a stage judges those.
    assert pipeline.run_stage(engine, reg.run_id, "performance")["status"] != "error"
    # Without it (a worker that has no copy), the stage reads the source and must refuse changed evidence.
    shutil.rmtree(tmp_path / "cache")
    out = pipeline.run_stage(engine, reg.run_id, "performance")
    assert out["status"] == "error" and "changed since the run was registered" in out["reason"]


def test_timeout_never_approves(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    run_id = run_all(engine, spec_path)
    later = pipeline.utcnow() + timedelta(hours=2)
    state = pipeline.signoff_state(engine, run_id, now=later)
    assert state.state == "timeout"
    pipeline.mark_signoff_timeout(engine, run_id)
    with reader(engine) as s:
        assert s.get(CertificationRun, run_id).status == "signoff_timeout"
    with pytest.raises(ModelcertError):
        pipeline.promote(engine, run_id)
