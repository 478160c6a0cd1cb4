"""The one lifecycle (modelcert.lifecycle) against a real PostgreSQL, with the fast fake stages of tests/lifecycle:
certification and recertification through the same path with the audit events of every transition, a waiting
run superseded by a newer one, a replaced certificate superseded (not revoked), promote refusing a run whose
status was forged in SQL, and illegal transitions refused (by the code and by the database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from modelcert import lifecycle, pipeline, recertify
from modelcert.db.models import AuditEvent, Certificate, CertificationRun, ModelVersion
from modelcert.db.session import reader, transaction
from modelcert.errors import LifecycleError, ModelcertError, SignoffError
from modelcert.governance import Identity, record_decision
from modelcert.stages import STAGE_NAMES
from tests.lifecycle import ROLES, FakeStage, run_all, superuser, tiny_audit_data, write_tiny_audit_spec

pytestmark = pytest.mark.store
DAG = "recertify_models"


@pytest.fixture
def stages(verdicts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fake stages for certification (``verdicts`` patches the pipeline) and for recertification."""
    monkeypatch.setattr(recertify, "get_stage", lambda name: FakeStage(name, verdicts[name]))
    return verdicts


@pytest.fixture
def recert_spec(tmp_path: Path) -> Path:
    """A tiny predictions-only spec with a recertification section (current data ``prod_{ds}.csv``)."""
    path, full = write_tiny_audit_spec(tmp_path)
    df = tiny_audit_data()
    full["recertification"] = {"current_data": "prod_{ds}.csv", "labels_available": True}
    path.write_text(yaml.safe_dump(full, sort_keys=False))
    for ds in ("2026-11-30", "2026-12-01"):
        df.to_csv(tmp_path / f"prod_{ds}.csv", index=False)
    return path


def approve_all(engine: Any, run_id: str) -> None:
    with reader(engine) as s:
        digest = s.get(CertificationRun, run_id).evidence_digest
    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        record_decision(engine, run_id, Identity(who, "test"), role=role, decision="approve", roles=ROLES,
                        evidence_digest=digest)


def events(engine: Any, entity_id: str) -> list[str]:
    """The audit actions of one entity, in order (stage results collapsed to one ``stage_recorded``)."""
    with reader(engine) as s:
        actions = list(s.execute(select(AuditEvent.action).where(AuditEvent.entity_id == entity_id)
                                 .order_by(AuditEvent.id)).scalars())
    return [a for i, a in enumerate(actions) if not (a == "stage_recorded" and i and actions[i - 1] == a)]


def status(engine: Any, model: Any, key: Any) -> str:
    with reader(engine) as s:
        return s.get(model, key).status


def test_certify_then_recertify_through_one_lifecycle(engine: Any, recert_spec: Path, stages: dict[str, str]) -> None:
    run_id = run_all(engine, recert_spec, key="certify_model/1")
    approve_all(engine, run_id)
    cert = pipeline.promote(engine, run_id)
    assert events(engine, run_id) == ["run_registered", "stage_recorded", "run_awaiting_signoff", "signoff_approve",
                                      "signoff_approve", "run_certified"]
    # Day 1: every check holds → the certificate is checked and stays valid.
    day1 = recertify.recertify(engine, cert["certificate_id"], dag_id=DAG, airflow_run_id="d1", ds="2026-11-30")
    assert day1["status"] == "passed" and day1["transition"] == "checked"
    assert events(engine, day1["run_id"]) == ["recertification_started", "stage_recorded", "recertification_passed"]
    # Day 2: performance fails → the same verdict path, the other effect: the certificate is suspended, once.
    stages["performance"] = "failed"
    for _ in range(2):  # re-running the day adds nothing
        day2 = recertify.recertify(engine, cert["certificate_id"], dag_id=DAG, airflow_run_id="d2", ds="2026-12-01")
    assert day2["status"] == "failed" and day2["certificate_status"] == "suspended"
    assert events(engine, day2["run_id"]) == ["recertification_started", "stage_recorded", "recertification_failed"]
    assert events(engine, cert["certificate_id"]) == ["certificate_issued", "certificate_checked",
                                                      "certificate_suspended"]
    assert status(engine, CertificationRun, day2["run_id"]) == "failed"
    # Illegal from here: a suspended certificate cannot be suspended, expired or checked again.
    with transaction(engine) as s:
        c = s.get(Certificate, cert["certificate_id"])
        mv = s.get(ModelVersion, c.model_version_id)
        with pytest.raises(LifecycleError, match="is suspended: expiry needs a certificate that is valid"):
            lifecycle.expire(s, c, mv)
        with pytest.raises(LifecycleError, match="suspension needs a certificate that is valid"):
            lifecycle.suspend(s, c, mv, reason="again", payload={})


def test_a_run_reaching_signoff_supersedes_the_older_waiting_run(engine: Any, spec_path: Path,
                                                                 verdicts: dict[str, str]) -> None:
    older = run_all(engine, spec_path, key="certify_model/a")
    newer = run_all(engine, spec_path, key="certify_model/b")  # the same model version
    assert status(engine, CertificationRun, older) == "superseded"
    assert status(engine, CertificationRun, newer) == "awaiting_signoff"
    with reader(engine) as s:
        [ev] = s.execute(select(AuditEvent).where(AuditEvent.action == "run_superseded")).scalars()
        old_row = s.get(CertificationRun, older)
    assert ev.entity_id == older and ev.payload["superseded_by"] == newer
    assert newer in old_row.reasons[0]
    state = pipeline.signoff_state(engine, older)
    assert state.state == "not_awaiting" and newer in state.detail  # its sign-off sensor ends
    with pytest.raises(SignoffError, match="not awaiting sign-off"):
        record_decision(engine, older, Identity("bob", "t"), role="model_validator", decision="approve", roles=ROLES,
                        evidence_digest=old_row.evidence_digest)
    with pytest.raises(ModelcertError, match="is superseded"):
        pipeline.promote(engine, older)
    with pytest.raises(ModelcertError, match="is already superseded"):
        pipeline.register(engine, spec_path, run_key="certify_model/a")  # final: not restarted
    # A run of the same version that was rejected does not supersede anything.
    verdicts["fairness"] = "failed"
    rejected = run_all(engine, spec_path, key="certify_model/c")
    assert status(engine, CertificationRun, rejected) == "rejected"
    assert status(engine, CertificationRun, newer) == "awaiting_signoff"


def test_a_newer_certificate_supersedes_the_older_one(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    first_run = run_all(engine, spec_path, key="certify_model/1")
    approve_all(engine, first_run)
    first = pipeline.promote(engine, first_run)
    second_run = run_all(engine, spec_path, key="certify_model/2")
    approve_all(engine, second_run)
    second = pipeline.promote(engine, second_run)
    with reader(engine) as s:
        old = s.get(Certificate, first["certificate_id"])
    assert old.status == "superseded" and second["certificate_id"] in old.status_reason
    assert events(engine, old.id) == ["certificate_issued", "certificate_superseded"]
    assert status(engine, Certificate, second["certificate_id"]) == "valid"


def test_promote_refuses_a_rejected_run_whose_status_was_set_in_sql(engine: Any, spec_path: Path,
                                                                    verdicts: dict[str, str]) -> None:
    verdicts["fairness"] = "failed"
    run_id = run_all(engine, spec_path)
    assert status(engine, CertificationRun, run_id) == "rejected"
    superuser(engine, f"UPDATE certification_runs SET status = 'awaiting_signoff' WHERE id = '{run_id}'")
    approve_all(engine, run_id)  # the forged status lets approvals in; promote must still refuse
    with pytest.raises(LifecycleError, match=r"stored stage results do not pass the gate: fairness: score\[all\]"):
        pipeline.promote(engine, run_id)
    with reader(engine) as s:
        assert s.execute(select(Certificate)).first() is None


def test_promote_refuses_a_status_no_transition_led_to(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    """Check rows edited to pass too: the gate holds, but the audited history ends in rejected."""
    verdicts["fairness"] = "failed"
    run_id = run_all(engine, spec_path)
    superuser(engine,
              "UPDATE check_results SET passed = true",
              f"UPDATE stage_results SET status = 'passed' WHERE run_id = '{run_id}'",
              f"UPDATE certification_runs SET status = 'awaiting_signoff', reasons = '[]' WHERE id = '{run_id}'")
    approve_all(engine, run_id)
    with pytest.raises(LifecycleError, match="audited history ends rejected, not awaiting_signoff"):
        pipeline.promote(engine, run_id)
    assert status(engine, CertificationRun, run_id) == "awaiting_signoff"  # nothing half-written


def test_illegal_transitions_are_refused(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    verdicts["fairness"] = "failed"
    rejected = run_all(engine, spec_path)
    with transaction(engine) as s:
        run = s.get(CertificationRun, rejected)
        mv = s.get(ModelVersion, run.model_version_id)
        with pytest.raises(LifecycleError, match="audited history ends rejected"):
            lifecycle.certify(s, run, mv, approvers=[], valid_for=pd.Timedelta("1D").to_pytimedelta(), replaced=[])
        with pytest.raises(LifecycleError, match="is rejected: a decline needs a certification run that is "
                                                 "awaiting_signoff"):
            lifecycle.decline(s, run, actor="bob", role="model_validator", reason="no")
    with pytest.raises(LifecycleError, match="illegal step rejected → certified"):
        lifecycle.replay(["run_registered", "run_rejected", "run_certified"])
    with pytest.raises(LifecycleError, match="illegal step new → awaiting_signoff"):
        lifecycle.replay(["run_awaiting_signoff"])
    assert lifecycle.replay(["run_registered", "stage_recorded", "run_awaiting_signoff", "signoff_approve",
                             "run_certified"]).last == "certified"
    # The database refuses a state the lifecycle does not know.
    for sql in (f"UPDATE certification_runs SET status = 'approved' WHERE id = '{rejected}'",
                f"UPDATE certification_runs SET status = 'passed' WHERE id = '{rejected}'",  # a recertification state
                "UPDATE model_versions SET status = 'valid'"):
        with pytest.raises(IntegrityError, match="violates check constraint"), transaction(engine) as s:
            s.execute(text(sql))


def test_all_stages_are_expected_by_the_gate(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    """A passing run whose stage row was deleted in SQL is refused at promote (every expected stage present)."""
    run_id = run_all(engine, spec_path)
    approve_all(engine, run_id)
    superuser(engine, f"DELETE FROM stage_results WHERE run_id = '{run_id}' AND stage = '{STAGE_NAMES[-1]}'")
    with pytest.raises(LifecycleError, match=f"{STAGE_NAMES[-1]}: no result recorded"):
        pipeline.promote(engine, run_id)
