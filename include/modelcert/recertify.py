"""Recertification: re-check certified models on production data, on a schedule.

For each valid certificate whose spec has a ``recertification:`` section, the stages that apply to production
data (data quality, drift against the certification-time reference, performance and fairness when the current
data has labels, robustness when asked for) run again on the *current data* the spec names, with the
certification's thresholds and the section's overrides. The result is a run of kind ``recertification``
(run key ``<dag_id>/<airflow run id>/<model>/<version>``), linked to the certificate it checked:

* every required check holds → ``passed``: the certificate stays valid, ``last_checked_at`` moves;
* a required check is inconclusive (its interval straddles the bound) → ``passed`` with the check named in the
  run's reasons as needing attention: the certificate stays valid and is flagged (``status --models``, the ops
  page); only a failed check suspends;
* a required check fails → ``failed``: the certificate is ``suspended`` (reasons in ``status_reason``) and the
  model version too; only a new certification run with sign-off brings a valid certificate back;
* the checks could not be made (no current data, a stage error) → ``error``: the certificate is unchanged and
  ops must look (the Airflow task fails).

Certificates past ``valid_until`` become ``expired``. Every change is audited in the transaction that makes it,
and only a change is: re-running a day's recertification replaces the same rows and adds no audit event, no
second suspension. Everything here is plain library code (no Airflow); ``dags/recertify_models.py`` wires it.

This is the certification path (``modelcert.lifecycle`` for every state change; ``pipeline.guarded``,
``save_stage`` and ``gate`` for the stages and the verdict) with two differences: the spec is transformed
(:func:`recertification_spec`) and the verdict's effect is on the certificate (checked / suspended / unchanged)
instead of a sign-off.
"""

from __future__ import annotations

import glob
import re
import time
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from modelcert import audit, lifecycle
from modelcert.context import EvalContext
from modelcert.db.models import AuditEvent, Certificate, CertificationRun, ModelVersion, StageResult
from modelcert.db.session import reader, transaction
from modelcert.errors import DataError, ModelcertError, SpecError
from modelcert.evidence import Evidence, sha256_file
from modelcert.lifecycle import RECERTIFICATION, SYSTEM, utcnow
from modelcert.pipeline import gate, guarded, inconclusive_checks, save_stage
from modelcert.spec import (
    LABEL_STAGES,
    RECERTIFICATION_STAGES,
    CertificationSpec,
    RecertificationSection,
    merge_checks,
    parse_spec,
    resolve_path,
)
from modelcert.stages import get_stage
from modelcert.stages.base import StageOutcome, not_applicable, outcome

KIND = RECERTIFICATION
#: Audit action recording that a suspension was announced (the Airflow asset event for deployment DAGs).
ANNOUNCED = "certificate_suspension_announced"
DEFAULT_EXPIRING_WITHIN_DAYS = 14
_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def run_key(dag_id: str, airflow_run_id: str, model: str, version: str) -> str:
    """Idempotency key of one model's recertification in one DAG run."""
    return f"{dag_id}/{airflow_run_id}/{model}/{version}"


# ------------------------------------------------------------------------------------------- expiry
def _expire(s: Session, cert: Certificate, mv: ModelVersion) -> dict[str, Any]:
    lifecycle.expire(s, cert, mv)
    return {"certificate_id": cert.id, "model": mv.name, "version": mv.version,
            "valid_until": cert.valid_until.isoformat(), "status": cert.status}


def expire_due(engine: Engine, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Mark every valid certificate whose validity has ended as ``expired`` (idempotent: only valid ones move)."""
    now = now or utcnow()
    with transaction(engine) as s:
        due = s.execute(select(Certificate.model_version_id).where(Certificate.status == "valid",
                                                                   Certificate.valid_until <= now)).scalars().all()
        # The lifecycle's lock order: model versions first (sorted: two expiries at once never deadlock).
        versions = [lifecycle.lock_model_version(s, mv_id) for mv_id in sorted(set(due))]
        rows = s.execute(
            select(Certificate, ModelVersion)
            .join(ModelVersion, Certificate.model_version_id == ModelVersion.id)
            .where(Certificate.status == "valid", Certificate.valid_until <= now,
                   Certificate.model_version_id.in_([mv.id for mv in versions]))
            .order_by(ModelVersion.name, ModelVersion.version)
            .with_for_update(of=Certificate)
        ).all()
        return [_expire(s, cert, mv) for cert, mv in rows]


# ------------------------------------------------------------------------------------------- targets
def find_targets(engine: Engine, *, now: datetime | None = None, dag_id: str | None = None,
                 airflow_run_id: str | None = None) -> list[dict[str, Any]]:
    """Every valid certificate (not past its validity) that the risk policy's cadence makes due, with what the
    mapped recertification needs.

    ``expiring_soon``: validity ends within the spec's ``recertification.expiring_within_days`` (default 14).
    ``configured``: the spec has a ``recertification:`` section (without one the model cannot be re-checked).
    Given the DAG run (``dag_id``, ``airflow_run_id``), a certificate this same DAG run already recertified stays a
    target: re-running a day re-checks it and replaces the same rows, instead of the cadence skipping it because
    that very run just checked it."""
    now = now or utcnow()
    with reader(engine) as s:
        own: set[str] = set()
        if dag_id is not None and airflow_run_id is not None:
            own = set(s.execute(select(CertificationRun.run_key).where(
                CertificationRun.run_key.startswith(run_key(dag_id, airflow_run_id, "", "").rstrip("/") + "/",
                                                    autoescape=True))).scalars())
        rows = s.execute(
            select(Certificate, ModelVersion, CertificationRun.spec)
            .join(ModelVersion, Certificate.model_version_id == ModelVersion.id)
            .join(CertificationRun, Certificate.run_id == CertificationRun.id)
            .where(Certificate.status == "valid", Certificate.valid_until > now)
            .order_by(ModelVersion.name, ModelVersion.version, Certificate.issued_at)
        ).all()
    out = []
    from modelcert.policy import recertification_due

    for cert, mv, spec in rows:
        rerun = own and run_key(dag_id or "", airflow_run_id or "", mv.name, mv.version) in own
        if not rerun and not recertification_due(mv.risk_tier, cert.last_checked_at, now):
            continue  # checked more recently than the risk policy's recertify_every for its tier
        section = (spec or {}).get("recertification")
        within = int((section or {}).get("expiring_within_days", DEFAULT_EXPIRING_WITHIN_DAYS))
        days_left = (cert.valid_until - now).total_seconds() / 86400
        out.append({
            "certificate_id": cert.id, "model": mv.name, "version": mv.version, "label": f"{mv.name} {mv.version}",
            "valid_until": cert.valid_until.isoformat(), "days_left": round(days_left, 2),
            "expiring_within_days": within, "expiring_soon": days_left <= within, "configured": section is not None,
        })
    return out


# ------------------------------------------------------------------------------------------- current data
def resolve_current_data(template: str, base_dir: Path, ds: str) -> Path:
    """The file a recertification judges: ``{ds}``/``{ds_nodash}`` filled with the run's date, environment
    variables expanded, relative to the spec's folder; a glob picks the newest match (modification time, then
    name). No file is a :class:`DataError` naming the field, the pattern and the date — never a silent pass."""
    if not _DS.match(ds):
        raise DataError(f"recertification date {ds!r} is not YYYY-MM-DD")
    try:
        filled = template.format(ds=ds, ds_nodash=ds.replace("-", ""))
    except (KeyError, IndexError, ValueError) as exc:
        raise SpecError(f"recertification.current_data: {template!r} is not a valid template: {exc}") from exc
    path = resolve_path(filled, base_dir, field="recertification.current_data")
    where = f"(recertification.current_data {template!r}, date {ds})"
    if glob.has_magic(str(path)):
        matches = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()]
        if not matches:
            raise DataError(f"recertification.current_data: no current data: no file matches {str(path)!r} {where}")
        newest = max(matches, key=lambda p: (p.stat().st_mtime, p.name))
        # A match may be a symlink: the same data-root rule as every other path, after resolving it.
        return resolve_path(str(newest), base_dir, field="recertification.current_data")
    if not path.is_file():
        raise DataError(f"recertification.current_data: no current data: {str(path)!r} does not exist {where}")
    return path


# ------------------------------------------------------------------------------------------- the spec judged
def _reference_entry(cert_evidence: dict[str, Any]) -> dict[str, Any] | None:
    files = cert_evidence.get("files") or {}
    return files.get("reference") or files.get("train")


def recertification_spec(spec: CertificationSpec, *, current: Path, reference: str | None,
                         train: str | None) -> CertificationSpec:
    """The certified spec pointed at production data: ``data.test`` and ``data.current`` are the current data,
    ``data.reference`` the certification-time reference (its ``data.reference``, else its training data),
    ``data.train`` the training data (robustness takes its valid ranges from it); checks = the certification's
    with the recertification overrides. Declared dataset hashes are checked against the certification's evidence
    instead (the current data has no declared hash)."""
    assert spec.recertification is not None
    d = spec.model_dump(mode="json")
    d["data"].update(test=str(current), current=str(current), reference=reference, train=train, sha256={})
    d["checks"] = merge_checks(spec.checks, spec.recertification.checks).model_dump(mode="json")
    return parse_spec(d, source="recertification")


def _stage_spec(spec: CertificationSpec, stage: str) -> CertificationSpec:
    """Data quality judges the current data alone (the training data was judged at certification)."""
    if stage == "data_quality" and spec.data.train is not None:
        d = spec.model_dump(mode="json")
        d["data"]["train"] = None
        return parse_spec(d, source="recertification")
    return spec


def _without_label_checks(result: StageOutcome, label: str) -> StageOutcome:
    """Production data without labels: drop data quality's checks of the label column (it is absent by design)
    and say so in the summary."""
    if result.status in ("error", "not_applicable"):
        return result
    kept = [c for c in result.checks if c.subject != f"test.{label}"]
    if len(kept) == len(result.checks):
        return result
    summary = {**result.summary, "label_checks": f"not applicable: no labels in the current data "
                                                 f"(recertification.labels_available is false; {label!r} not checked)"}
    return replace(outcome(result.stage, kept, library=result.library, summary=summary), reason=result.reason)


# ------------------------------------------------------------------------------------------- storing
def _outcome_dict(run: CertificationRun, cert: Certificate, mv: ModelVersion, stages: dict[str, str], *,
                  transition: str | None = None, note: str = "") -> dict[str, Any]:
    ev = run.evidence or {}
    order = {name: i for i, name in enumerate(RECERTIFICATION_STAGES)}
    stages = dict(sorted(stages.items(), key=lambda kv: order.get(kv[0], 99)))
    return {
        "run_id": run.id, "run_key": run.run_key, "model": mv.name, "version": mv.version,
        "label": f"{mv.name} {mv.version}", "certificate_id": cert.id, "certificate_status": cert.status,
        "status": run.status, "reasons": list(run.reasons or []), "stages": stages, "transition": transition,
        "ds": ev.get("ds"), "current_data": (ev.get("files", {}).get("current") or {}).get("path"),
        "note": note,
    }


def _stage_statuses(s: Session, run_id: str) -> dict[str, str]:
    return dict(s.execute(select(StageResult.stage, StageResult.status).where(StageResult.run_id == run_id)).all())


# ------------------------------------------------------------------------------------------- one certificate
def recertify(engine: Engine, certificate_id: str, *, dag_id: str, airflow_run_id: str, ds: str,
              triggered_by: str | None = None, attempt: int = 1, now: datetime | None = None) -> dict[str, Any]:
    """Recertify one certificate on the current data of ``ds``; returns the outcome (JSON-safe, for XCom).

    ``status``: passed | failed | error (a run row exists) or skipped | not_configured | expired (nothing to
    check). ``transition`` is ``"suspended"`` or ``"checked"`` only in the call that changed the certificate.
    Unexpected exceptions in a stage are recorded (stage error, run error), then re-raised so the orchestrator
    can retry; a retry replaces the same rows."""
    now = now or utcnow()
    with reader(engine) as s:
        cert = s.get(Certificate, certificate_id)
        if cert is None:
            raise ModelcertError(f"no certificate with id {certificate_id!r}")
        mv = s.get(ModelVersion, cert.model_version_id)
        cert_run = s.get(CertificationRun, cert.run_id)
        assert mv is not None and cert_run is not None
        key = run_key(dag_id, airflow_run_id, mv.name, mv.version)
        existing = s.execute(select(CertificationRun).where(CertificationRun.run_key == key)).scalar_one_or_none()
        existing_stages = _stage_statuses(s, existing.id) if existing is not None else {}
    base = {"certificate_id": cert.id, "model": mv.name, "version": mv.version, "label": f"{mv.name} {mv.version}",
            "run_id": None, "run_key": key, "reasons": [], "stages": {}, "transition": None, "ds": ds,
            "certificate_status": cert.status}

    if cert.status != "valid":
        if existing is not None and existing.certificate_id == cert.id and existing.status in ("passed", "failed"):
            # Re-run of a day whose verdict already changed the certificate: nothing more to do.
            return _outcome_dict(existing, cert, mv, existing_stages,
                                 note=f"already recertified in this run; the certificate is {cert.status}")
        return {**base, "status": "skipped", "note": f"the certificate is {cert.status}, not valid"}
    if cert.valid_until <= now:
        with transaction(engine) as s:
            mv_locked = lifecycle.lock_model_version(s, cert.model_version_id)
            locked = s.get(Certificate, cert.id, with_for_update=True, populate_existing=True)
            assert locked is not None
            if locked.status == "valid":
                _expire(s, locked, mv_locked)
        return {**base, "status": "expired", "certificate_status": "expired",
                "note": f"validity ended {cert.valid_until.isoformat()}; marked expired"}

    try:
        spec = parse_spec(cert_run.spec, source=cert_run.spec_path)
    except SpecError as exc:
        return _record_error(engine, key, cert, mv, cert_run, ds, [f"certified spec: {exc}"], dag_id=dag_id,
                             airflow_run_id=airflow_run_id, triggered_by=triggered_by, now=now)
    section = spec.recertification
    if section is None:
        return {**base, "status": "not_configured",
                "note": "the certified spec has no recertification section (where the current data comes from)"}

    base_dir = Path(cert_run.spec_base_dir)
    try:
        current = resolve_current_data(section.current_data, base_dir, ds)
    except ModelcertError as exc:
        return _record_error(engine, key, cert, mv, cert_run, ds, [str(exc)], dag_id=dag_id,
                             airflow_run_id=airflow_run_id, triggered_by=triggered_by, now=now,
                             template=section.current_data)

    cert_ev = cert_run.evidence or {}
    cert_files = cert_ev.get("files") or {}
    ref_entry = _reference_entry(cert_ev)
    train_entry = cert_files.get("train")
    current_entry = {"path": str(current), "sha256": sha256_file(current), "bytes": current.stat().st_size}
    files: dict[str, dict[str, Any]] = {"current": current_entry, "test": current_entry}
    if ref_entry is not None:
        files["reference"] = ref_entry
    if train_entry is not None:
        files["train"] = train_entry
    if "model" in cert_files:
        files["model"] = cert_files["model"]
    # Judged on the certified (effective) spec's thresholds: under the risk policy the certification recorded.
    evidence = Evidence(spec_sha256=str(cert_ev.get("spec_sha256", "")), files=files,
                        policy=cert_ev.get("policy") or {})
    effective = recertification_spec(spec, current=current,
                                     reference=str(ref_entry["path"]) if ref_entry else None,
                                     train=str(train_entry["path"]) if train_entry else None)
    run_id, previous = _start_run(engine, key, cert, mv, cert_run, effective, evidence, section, ds=ds,
                                  dag_id=dag_id, airflow_run_id=airflow_run_id, triggered_by=triggered_by)

    unexpected: BaseException | None = None
    shared = EvalContext(spec=effective, base_dir=base_dir, evidence=evidence)
    try:
        for stage_name in section.effective_stages:
            started = utcnow()
            t0 = time.perf_counter()
            result, failure = guarded(stage_name, get_stage(stage_name).library,
                                      partial(_run_stage, stage_name, effective, shared, section, base_dir, evidence))
            unexpected = unexpected or failure
            save_stage(engine, run_id, result, started=started, duration_s=time.perf_counter() - t0,
                       attempt=attempt, audit_unchanged=False, audit_extra={"kind": KIND})
    finally:
        shared.close()  # the stages share one model (and one isolated process, for a pickle artifact)

    out = _decide(engine, run_id, cert.id, section, previous, ds=ds, now=now)
    if unexpected is not None:
        raise unexpected
    return out


def _run_stage(name: str, spec: CertificationSpec, shared: EvalContext, section: RecertificationSection,
               base_dir: Path, evidence: Evidence) -> StageOutcome:
    stage = get_stage(name)
    if name in LABEL_STAGES and not section.labels_available:
        return not_applicable(name, "no labels in the current data (recertification.labels_available is false)",
                              library=stage.library)
    if name == "drift" and spec.data.reference is None:
        return not_applicable(name, "no certification-time reference to compare with (the certified spec has "
                                    "neither data.reference nor data.train)", library=stage.library)
    if name == "data_quality":
        ctx = EvalContext(spec=_stage_spec(spec, name), base_dir=base_dir, evidence=evidence)
        result = stage.run(ctx)
        return result if section.labels_available else _without_label_checks(result, spec.data.label)
    return stage.run(shared)


def _start_run(engine: Engine, key: str, cert: Certificate, mv: ModelVersion, cert_run: CertificationRun,
               effective: CertificationSpec, evidence: Evidence, section: RecertificationSection, *, ds: str,
               dag_id: str, airflow_run_id: str,
               triggered_by: str | None) -> tuple[str, tuple[str | None, list[Any]]]:
    """Create (or reuse, by run key) the recertification run; returns its id and the previous verdict.

    Only a new run is audited (``recertification_started``): re-running a day adds no event."""
    with transaction(engine) as s:
        run, previous_status = lifecycle.open_run(s, key, kind=KIND)
        previous: tuple[str | None, list[Any]] = (previous_status, list(run.reasons or []) if previous_status else [])
        _fill_run(run, cert, mv, cert_run, dag_id=dag_id, airflow_run_id=airflow_run_id, triggered_by=triggered_by)
        run.spec = effective.model_dump(mode="json")
        run.evidence = {**evidence.as_dict(), "ds": ds, "current_data_template": section.current_data,
                        "certification_run_id": cert_run.id, "certificate_id": cert.id,
                        "stages": section.effective_stages}
        run.evidence_digest = evidence.digest
        lifecycle.start_run(s, run, previous_status, actor=triggered_by or SYSTEM,
                            payload={"model": mv.name, "version": mv.version, "certificate": cert.id, "ds": ds,
                                     "run_key": key, "current_data": evidence.files["current"],
                                     "evidence_digest": evidence.digest, "stages": section.effective_stages})
        # Stages no longer in the plan (the same run key re-run after a code change) do not linger.
        for old in s.execute(select(StageResult).where(StageResult.run_id == run.id,
                                                       StageResult.stage.not_in(section.effective_stages))).scalars():
            s.delete(old)
        return run.id, previous


def _fill_run(run: CertificationRun, cert: Certificate, mv: ModelVersion, cert_run: CertificationRun, *,
              dag_id: str, airflow_run_id: str, triggered_by: str | None) -> None:
    run.kind = KIND
    run.model_version_id = mv.id
    run.certificate_id = cert.id
    run.spec_path = cert_run.spec_path
    run.spec_base_dir = cert_run.spec_base_dir
    run.spec_text = cert_run.spec_text
    run.submitter = cert_run.submitter
    run.triggered_by = triggered_by
    run.airflow_dag_id = dag_id
    run.airflow_run_id = airflow_run_id


def _record_error(engine: Engine, key: str, cert: Certificate, mv: ModelVersion, cert_run: CertificationRun, ds: str,
                  reasons: list[str], *, dag_id: str, airflow_run_id: str, triggered_by: str | None, now: datetime,
                  template: str | None = None) -> dict[str, Any]:
    """The checks could not even start (no current data, unreadable spec): an ``error`` run, audited once per
    change; the certificate is unchanged."""
    with transaction(engine) as s:
        run, previous = lifecycle.open_run(s, key, kind=KIND)
        _fill_run(run, cert, mv, cert_run, dag_id=dag_id, airflow_run_id=airflow_run_id, triggered_by=triggered_by)
        # Nothing was judged: no evidence files, the certified spec as it is.
        run.spec = cert_run.spec
        run.evidence_digest = ""
        run.evidence = {"ds": ds, "current_data_template": template, "certification_run_id": cert_run.id,
                        "certificate_id": cert.id, "files": {}}
        lifecycle.record_error(s, run, previous, reasons, actor=SYSTEM, now=now, only_if_changed=True,
                               payload={"model": mv.name, "version": mv.version, "certificate": cert.id, "ds": ds,
                                        "run_key": key, "reasons": reasons})
        for old in s.execute(select(StageResult).where(StageResult.run_id == run.id)).scalars():
            s.delete(old)  # results of an earlier attempt judged data that is no longer there
        return _outcome_dict(run, cert, mv, {})


def _decide(engine: Engine, run_id: str, certificate_id: str, section: RecertificationSection,
            previous: tuple[str | None, list[Any]], *, ds: str, now: datetime) -> dict[str, Any]:
    """The recertification's verdict (the certification gate, :func:`lifecycle.verdict`) and its effect on the
    certificate, in one transaction: failed → suspended; passed → checked (``last_checked_at`` moves); error →
    unchanged. Audited only when the verdict changed (a re-run of the day adds nothing, never a second
    suspension)."""
    with transaction(engine) as s:
        cert_row = s.get(Certificate, certificate_id)
        assert cert_row is not None
        mv = lifecycle.lock_model_version(s, cert_row.model_version_id)  # lock order: version, certificate, run
        cert = s.get(Certificate, certificate_id, with_for_update=True, populate_existing=True)
        run = s.get(CertificationRun, run_id, with_for_update=True, populate_existing=True)
        assert run is not None and cert is not None
        results, errors, failures = gate(s, run_id, section.effective_stages)
        if not errors and results and all(r.status == "not_applicable" for r in results.values()):
            errors.append("no recertification stage applies: " + "; ".join(f"{r.stage}: {r.reason}"
                                                                           for r in results.values()))
        # Inconclusive required checks never suspend: the run passes, and they are its reasons (attention).
        attention = [f"attention: {line}; not a failure, the certificate stays valid but needs a look"
                     for line in inconclusive_checks(s, run_id)]
        status, reasons = lifecycle.verdict(KIND, errors, failures, attention)
        changed = lifecycle.decide(s, run, status, reasons, baseline=previous, now=now,
                                   payload={"certificate": cert.id, "model": mv.name, "version": mv.version, "ds": ds})
        transition: str | None = None
        if status == "failed" and cert.status == "valid":
            lifecycle.suspend(s, cert, mv, now=now,
                              reason=f"recertification on {ds} failed (run {run.id}): " + "; ".join(reasons),
                              payload={"recertification_run": run.id, "ds": ds, "reasons": reasons})
            transition = "suspended"
        elif status == "passed" and cert.status == "valid" and changed:
            lifecycle.mark_checked(s, cert, mv, now=now, payload={"recertification_run": run.id, "ds": ds,
                                                                 "attention": attention})
            transition = "checked"
        s.flush()
        return _outcome_dict(run, cert, mv, {r.stage: r.status for r in results.values()}, transition=transition)


# ------------------------------------------------------------------------------------------- after the runs
def _of_dag_run(dag_id: str, airflow_run_id: str) -> Any:
    """(run, certificate, model version) of every recertification one DAG run made, by model."""
    prefix = f"{dag_id}/{airflow_run_id}/"
    return (select(CertificationRun, Certificate, ModelVersion)
            .join(Certificate, CertificationRun.certificate_id == Certificate.id)
            .join(ModelVersion, Certificate.model_version_id == ModelVersion.id)
            .where(CertificationRun.kind == KIND, CertificationRun.run_key.startswith(prefix, autoescape=True))
            .order_by(ModelVersion.name, ModelVersion.version))


def pending_announcements(engine: Engine, *, dag_id: str, airflow_run_id: str) -> list[dict[str, Any]]:
    """Certificates suspended by this DAG run's recertifications whose suspension was not announced yet."""
    with reader(engine) as s:
        rows = s.execute(_of_dag_run(dag_id, airflow_run_id)
                         .where(CertificationRun.status == "failed", Certificate.status == "suspended")).all()
        ids = [cert.id for _, cert, _ in rows]
        announced = set(s.execute(select(AuditEvent.entity_id).where(AuditEvent.action == ANNOUNCED,
                                                                     AuditEvent.entity_id.in_(ids))).scalars())
    return [
        {"certificate_id": cert.id, "model": mv.name, "version": mv.version, "label": f"{mv.name} {mv.version}",
         "recertification_run_id": run.id, "ds": (run.evidence or {}).get("ds"), "reasons": list(run.reasons or []),
         "status_reason": cert.status_reason,
         "suspended_at": cert.last_checked_at.isoformat() if cert.last_checked_at else None}
        for run, cert, mv in rows if cert.id not in announced
    ]


def record_announcement(engine: Engine, certificate_id: str, *, recertification_run_id: str,
                        channel: str) -> bool:
    """Record (once) that a suspension was announced; False when it already was."""
    with transaction(engine) as s:
        cert = s.get(Certificate, certificate_id, with_for_update=True)  # serializes announcers of one certificate
        if cert is None:
            raise ModelcertError(f"no certificate with id {certificate_id!r}")
        done = s.execute(select(AuditEvent.id).where(AuditEvent.action == ANNOUNCED,
                                                     AuditEvent.entity_id == certificate_id)).first()
        if done is not None:
            return False
        audit.append(s, actor=SYSTEM, action=ANNOUNCED, entity_type="certificate", entity_id=certificate_id,
                     payload={"recertification_run": recertification_run_id, "channel": channel})
        return True


def run_outcomes(engine: Engine, *, dag_id: str, airflow_run_id: str) -> list[dict[str, Any]]:
    """Every recertification of one DAG run, for its summary."""
    with reader(engine) as s:
        rows = s.execute(_of_dag_run(dag_id, airflow_run_id)).all()
        stages: dict[str, dict[str, str]] = {}
        for run_id, stage, status in s.execute(select(StageResult.run_id, StageResult.stage, StageResult.status)
                                               .where(StageResult.run_id.in_([r.id for r, _, _ in rows]))).all():
            stages.setdefault(run_id, {})[stage] = status
    return [_outcome_dict(run, cert, mv, stages.get(run.id, {})) for run, cert, mv in rows]


def unrecorded_targets(engine: Engine, targets: list[dict[str, Any]],
                       outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listed targets with a recertification plan whose certificate is still valid, but without a recorded
    recertification in ``outcomes``: their task broke before it could record one."""
    recorded = {o["certificate_id"] for o in outcomes}
    candidates = [t for t in targets if t.get("configured") and t["certificate_id"] not in recorded]
    if not candidates:
        return []
    with reader(engine) as s:
        valid = set(s.execute(select(Certificate.id).where(
            Certificate.id.in_([t["certificate_id"] for t in candidates]), Certificate.status == "valid")).scalars())
    return [t for t in candidates if t["certificate_id"] in valid]


def recertify_all(engine: Engine, *, ds: str, dag_id: str = "cli", airflow_run_id: str | None = None,
                  triggered_by: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """In-process equivalent of the DAG (no Airflow): expire, then recertify every valid certificate."""
    airflow_run_id = airflow_run_id or f"recertify__{ds}"
    expired = expire_due(engine, now=now)
    outcomes = [recertify(engine, t["certificate_id"], dag_id=dag_id, airflow_run_id=airflow_run_id, ds=ds,
                          triggered_by=triggered_by, now=now)
                for t in find_targets(engine, now=now, dag_id=dag_id, airflow_run_id=airflow_run_id)]
    return {"expired": expired, "recertified": outcomes}
