"""Read models for people: what a run judged, with what evidence, who signed, and what it produced.

Everything an auditor asks months later ("why was model X v2.3 approved, on what evidence, by whom")
is answered from these queries on Postgres alone.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import Engine, select

from modelcert import findings
from modelcert.db.models import (
    AuditEvent,
    Certificate,
    CertificationRun,
    CheckResult,
    ModelVersion,
    Signoff,
    StageResult,
)
from modelcert.db.session import reader
from modelcert.pipeline import load_run
from modelcert.stages import STAGE_NAMES


def policy_label(evidence: dict[str, Any] | None) -> str | None:
    """The risk policy a run was judged under, as people read it: ``2026-12 (sha256 3b17e534…)``; None for a run
    that did not record one (registered before policies were recorded, or refused before it was judged)."""
    p = (evidence or {}).get("policy") or {}
    return f"{p['version']} (sha256 {str(p['sha256'])[:8]}…)" if p.get("version") and p.get("sha256") else None


def list_runs(engine: Engine, *, limit: int = 50) -> list[dict[str, Any]]:
    with reader(engine) as s:
        rows = s.execute(
            select(CertificationRun, ModelVersion)
            .join(ModelVersion, CertificationRun.model_version_id == ModelVersion.id, isouter=True)
            .order_by(CertificationRun.created_at.desc())
            .limit(limit)
        ).all()
        stage_rows = s.execute(
            select(StageResult.run_id, StageResult.stage, StageResult.status)
            .where(StageResult.run_id.in_([r.id for r, _ in rows]))
        ).all()
    stages: dict[str, dict[str, str]] = {}
    for run_id, stage, status in stage_rows:
        stages.setdefault(run_id, {})[stage] = status
    return [
        {
            "run_id": run.id,
            "model": mv.name if mv else None,
            "version": mv.version if mv else None,
            "status": run.status,
            "created_at": run.created_at.isoformat(),
            "airflow_run_id": run.airflow_run_id,
            "stages": {name: stages.get(run.id, {}).get(name, "-") for name in STAGE_NAMES},
            "reasons": run.reasons,
            "policy": policy_label(run.evidence),
        }
        for run, mv in rows
    ]


def run_report(engine: Engine, run_id: str) -> dict[str, Any]:
    with reader(engine) as s:
        run = load_run(s, run_id)
        mv = s.get(ModelVersion, run.model_version_id) if run.model_version_id else None
        stage_results = list(s.execute(select(StageResult).where(StageResult.run_id == run_id)).scalars())
        checks = list(
            s.execute(
                select(CheckResult, StageResult.stage)
                .join(StageResult, CheckResult.stage_result_id == StageResult.id)
                .where(StageResult.run_id == run_id)
                .order_by(StageResult.stage, CheckResult.position)
            ).all()
        )
        signoffs = list(s.execute(select(Signoff).where(Signoff.run_id == run_id).order_by(Signoff.id)).scalars())
        register = [findings.as_dict(f) for f in findings.of_run(s, run_id)]
        cert = s.execute(select(Certificate).where(Certificate.run_id == run_id)).scalar_one_or_none()
        entities = [run_id] + ([cert.id] if cert else [])
        events = list(s.execute(select(AuditEvent).where(AuditEvent.entity_id.in_(entities))
                                .order_by(AuditEvent.id)).scalars())
    order = {name: i for i, name in enumerate(STAGE_NAMES)}
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for c, stage in checks:
        by_stage.setdefault(stage, []).append({
            "name": c.name, "subject": c.subject, "value": c.value, "threshold": c.threshold,
            "passed": c.passed, "verdict": c.verdict, "required": c.required, "message": c.message,
            "detail": c.detail,
        })
    for items in by_stage.values():
        # Failed checks first, then inconclusive, then warnings, then passed, then informational.
        items.sort(key=lambda c: (0 if c["passed"] is False and c["required"] else
                                  1 if c["verdict"] == "inconclusive" else
                                  2 if c["passed"] is False else 3 if c["passed"] else 4))
    return {
        "run_id": run.id,
        "kind": run.kind,
        #: Recertification runs: the certificate they re-checked.
        "checked_certificate_id": run.certificate_id,
        "model": mv.name if mv else None,
        "version": mv.version if mv else None,
        "owner": run.submitter,
        "status": run.status,
        "reasons": run.reasons,
        "created_at": run.created_at.isoformat(),
        "decided_at": run.decided_at.isoformat() if run.decided_at else None,
        "airflow": {"dag_id": run.airflow_dag_id, "run_id": run.airflow_run_id, "triggered_by": run.triggered_by},
        "spec_path": run.spec_path,
        "evidence": run.evidence,
        "evidence_digest": run.evidence_digest,
        "policy": policy_label(run.evidence),
        "stages": [
            {
                "stage": r.stage, "status": r.status, "reason": r.reason, "library": r.library,
                "library_version": r.library_version, "seconds": round(r.duration_s, 3),
                "summary": r.summary, "checks": by_stage.get(r.stage, []),
            }
            for r in sorted(stage_results, key=lambda r: order.get(r.stage, 99))
        ],
        #: The findings register of this run (``modelcert.findings``), most severe first.
        "findings": register,
        "signoffs": [
            {"approver": x.approver, "role": x.role, "decision": x.decision, "comment": x.comment,
             "evidence_digest": x.evidence_digest, "authenticated_via": x.authenticated_via,
             "at": x.created_at.isoformat()}
            for x in signoffs
        ],
        "certificate": None if cert is None else {
            "certificate_id": cert.id, "status": cert.status, "valid_from": cert.valid_from.isoformat(),
            "valid_until": cert.valid_until.isoformat(), "status_reason": cert.status_reason,
        },
        "audit": [{"id": e.id, "ts": e.ts.isoformat(), "actor": e.actor, "action": e.action, "payload": e.payload}
                  for e in events],
    }


def fairness_tables(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The fairness group tables of a run report, one per attribute or intersection: the groups (n, share, rates,
    reference, excluded-because) and the comparisons (metric, value, 95% interval and its method, adjusted p,
    bound, verdict), for the CLI report and the run page, certification and recertification alike. Summaries
    written before per-category fairness (privileged vs the rest) have no group list and give no table."""
    out: list[dict[str, Any]] = []
    for st in rep.get("stages") or []:
        if st.get("stage") != "fairness" or not isinstance(st.get("summary"), dict):
            continue
        summary = st["summary"]
        for name, a in (summary.get("attributes") or {}).items():
            if not isinstance(a, dict) or not isinstance(a.get("groups"), list):
                continue
            out.append({"attribute": name, "kind": a.get("kind"), "reference": a.get("reference"),
                        "reference_rule": a.get("reference_rule"), "groups": a["groups"],
                        "comparisons": a.get("comparisons") or [], "statistics": summary.get("statistics") or {},
                        "convention": summary.get("convention")})
    return out


def list_certificates(engine: Engine) -> list[dict[str, Any]]:
    with reader(engine) as s:
        rows = s.execute(
            select(Certificate, ModelVersion)
            .join(ModelVersion, Certificate.model_version_id == ModelVersion.id)
            .order_by(Certificate.issued_at.desc())
        ).all()
    return [
        {"certificate_id": c.id, "model": mv.name, "version": mv.version, "status": c.status,
         "valid_from": c.valid_from.isoformat(), "valid_until": c.valid_until.isoformat(), "run_id": c.run_id,
         "status_reason": c.status_reason}
        for c, mv in rows
    ]


def model_overview(engine: Engine, *, expiring_within_days: int = 14) -> list[dict[str, Any]]:
    """Every model version: certificate status and validity, latest run and each stage's last verdict.

    ``attention`` flags what ops must look at: expired or suspended certificates, validity ending within
    ``expiring_within_days``, or a certificate past its validity that nobody has marked expired yet."""
    from datetime import datetime, timedelta

    now = datetime.now(UTC)
    with reader(engine) as s:
        versions = list(s.execute(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)).scalars())
        certs = list(s.execute(select(Certificate).order_by(Certificate.issued_at)).scalars())
        runs = list(s.execute(select(CertificationRun).where(CertificationRun.model_version_id.is_not(None))
                              .order_by(CertificationRun.created_at)).scalars())
        stage_rows = s.execute(select(StageResult.run_id, StageResult.stage, StageResult.status)).all()
    latest_cert: dict[int, Certificate] = {}
    for c in certs:
        latest_cert[c.model_version_id] = c
    latest_run: dict[int, CertificationRun] = {}
    latest_recert: dict[int, CertificationRun] = {}
    run_by_id = {r.id: r for r in runs}
    for r in runs:
        assert r.model_version_id is not None
        latest_run[r.model_version_id] = r
        if r.kind == "recertification":
            latest_recert[r.model_version_id] = r
    stages: dict[str, dict[str, str]] = {}
    for run_id, stage, status in stage_rows:
        stages.setdefault(run_id, {})[stage] = status
    out = []
    for mv in versions:
        cert = latest_cert.get(mv.id)
        run = latest_run.get(mv.id)
        attention: list[str] = []
        if cert is not None:
            if cert.status in ("suspended", "expired", "revoked"):
                attention.append(f"certificate {cert.status}")
            elif cert.valid_until <= now:
                attention.append("certificate past its validity (not yet marked expired)")
            elif cert.valid_until <= now + timedelta(days=expiring_within_days):
                attention.append(f"expires within {expiring_within_days} days")
        recert = latest_recert.get(mv.id)
        certified_spec = (run_by_id[cert.run_id].spec or {}) if cert is not None and cert.run_id in run_by_id else {}
        configured = bool(certified_spec.get("recertification"))
        if cert is not None and cert.status == "valid":
            if not configured:
                attention.append("no recertification configured (spec has no recertification section)")
            elif recert is not None and recert.certificate_id == cert.id and recert.status == "error":
                attention.append("last recertification could not check the model (error)")
            elif recert is not None and recert.certificate_id == cert.id and recert.status == "passed" and \
                    recert.reasons:
                attention.append(f"last recertification: {len(recert.reasons)} inconclusive check(s) need a look "
                                 "(not suspended)")
        out.append({
            "model": mv.name, "version": mv.version, "owner": mv.owner, "risk_tier": mv.risk_tier,
            "model_status": mv.status,
            "certificate": None if cert is None else {
                "certificate_id": cert.id, "status": cert.status, "valid_until": cert.valid_until.isoformat(),
                "last_checked_at": cert.last_checked_at.isoformat() if cert.last_checked_at else None,
                "status_reason": cert.status_reason,
            },
            "latest_run": None if run is None else {
                "run_id": run.id, "kind": run.kind, "status": run.status, "created_at": run.created_at.isoformat(),
                "airflow_dag_id": run.airflow_dag_id, "airflow_run_id": run.airflow_run_id,
                "stages": {name: stages.get(run.id, {}).get(name, "-") for name in STAGE_NAMES},
                "policy": policy_label(run.evidence),
            },
            "recertification_configured": configured,
            "last_recertification": None if recert is None else {
                "run_id": recert.id, "status": recert.status, "certificate_id": recert.certificate_id,
                "at": (recert.decided_at or recert.created_at).isoformat(),
                "ds": (recert.evidence or {}).get("ds"),
                "current_data": ((recert.evidence or {}).get("files", {}).get("current") or {}).get("path"),
                "stages": dict(stages.get(recert.id, {})), "reasons": list(recert.reasons or []),
                "airflow_run_id": recert.airflow_run_id,
            },
            "attention": attention,
        })
    return out
