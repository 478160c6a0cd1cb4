"""Run and certificate state: the one module that changes it.

Why one owner: the state of a run or a certificate is what a deployment trusts. When several modules assigned
``.status`` each had its own idea of which changes are legal, and a status changed by hand in SQL looked like any
other. Here every change is one function per transition; each checks the state it leaves against the table of
allowed transitions and writes its audit event in the caller's transaction (the change and its record commit
together or not at all). The database refuses unknown states (CHECK constraints, migration 0003).

Runs (``certification_runs``), by kind:

* certification: ``running → error | rejected | awaiting_signoff`` (the gate; a re-run of the same run key
  restarts a run that has not reached a final state), ``awaiting_signoff → certified | declined |
  signoff_timeout | superseded``. Final: certified, declined, signoff_timeout, superseded.
* recertification: ``running → passed | failed | error``; a re-run of the same day starts it again.

Certificates: issued ``valid``; ``valid → expired | suspended | superseded | revoked``; an expired, suspended
or superseded certificate can still be revoked. Nothing brings a certificate back: a suspended model is valid
again only through a new certification run with sign-off (a new certificate).

Callers (``pipeline``, ``recertify``, ``governance``) lock the rows they change, in the order model version →
certificate → run, before the first audit event (which takes the audit chain's lock), so transitions of one
model version never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelcert import audit
from modelcert.db.models import (
    AuditEvent,
    Certificate,
    CertificateStatus,
    CertificationRun,
    ModelVersion,
    RunKind,
)
from modelcert.errors import LifecycleError, RunNotFound

#: The actor of transitions made by the system itself (the gate, a timeout, expiry, a recertification).
SYSTEM = "modelcert"
CERTIFICATION: RunKind = "certification"
RECERTIFICATION: RunKind = "recertification"

_DECIDABLE = frozenset({"running", "error", "rejected", "awaiting_signoff"})
_RECHECKABLE = frozenset({"running", "passed", "failed", "error"})
#: Allowed run transitions per kind: from-state (None = the run does not exist yet) → to-states.
RUN_TRANSITIONS: dict[str, dict[str | None, frozenset[str]]] = {
    CERTIFICATION: {
        None: frozenset({"running", "error"}),
        "running": _DECIDABLE,
        "error": _DECIDABLE,
        "rejected": _DECIDABLE,
        "awaiting_signoff": _DECIDABLE | {"certified", "declined", "signoff_timeout", "superseded"},
        "certified": frozenset(),
        "declined": frozenset(),
        "signoff_timeout": frozenset(),
        "superseded": frozenset(),
    },
    RECERTIFICATION: {None: frozenset({"running", "error"}), **{s: _RECHECKABLE for s in _RECHECKABLE}},
}
#: Certification runs in one of these states never change again (their stages, sign-offs and verdict are final).
TERMINAL: tuple[str, ...] = ("certified", "declined", "signoff_timeout", "superseded")
#: Allowed certificate transitions (None = not issued yet).
CERT_TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"valid"}),
    "valid": frozenset({"expired", "suspended", "superseded", "revoked"}),
    "expired": frozenset({"revoked"}),
    "suspended": frozenset({"revoked"}),
    "superseded": frozenset({"revoked"}),
    "revoked": frozenset(),
}
#: Audit actions that record a certification run's state change, and the state each leads to: what
#: :func:`verify_history` replays.
RUN_STATE_EVENTS: dict[str, str] = {
    "run_registered": "running",
    "run_restarted": "running",
    "run_error": "error",
    "run_rejected": "rejected",
    "run_awaiting_signoff": "awaiting_signoff",
    "run_declined": "declined",
    "run_signoff_timeout": "signoff_timeout",
    "run_certified": "certified",
    "run_superseded": "superseded",
}
_ACTION_PREFIX = {CERTIFICATION: "run", RECERTIFICATION: "recertification"}


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_final(run: CertificationRun) -> bool:
    """True when nothing may change the run any more (a certification run in a terminal state)."""
    return run.kind == CERTIFICATION and run.status in TERMINAL


def _kind(run: CertificationRun) -> str:
    return run.kind or CERTIFICATION


def _allow_run(run: CertificationRun, previous: str | None, to: str, what: str) -> None:
    allowed = RUN_TRANSITIONS[_kind(run)].get(previous, frozenset())
    if to not in allowed:
        sources = sorted(str(s) for s, targets in RUN_TRANSITIONS[_kind(run)].items() if to in targets and s)
        raise LifecycleError(f"run {run.id or run.run_key} is {previous or 'new'}: {what} needs a {_kind(run)} run "
                             f"that is {' or '.join(sources) or 'new'}")


def _allow_cert(cert: Certificate, to: str, what: str) -> None:
    if to not in CERT_TRANSITIONS.get(cert.status, frozenset()):
        sources = sorted(str(s) for s, targets in CERT_TRANSITIONS.items() if to in targets and s)
        raise LifecycleError(f"certificate {cert.id} is {cert.status}: {what} needs a certificate that is "
                             f"{' or '.join(sources)}")


# ------------------------------------------------------------------------------------------- runs
def load_run(s: Session, run_id: str) -> CertificationRun:
    run = s.get(CertificationRun, run_id)
    if run is None:
        raise RunNotFound(f"no certification run with id {run_id!r}")
    return run


#: Namespace (first key) of the transaction-level advisory locks that serialize registrations of one run key.
_RUN_KEY_LOCK = 7305_0701


def open_run(s: Session, run_key: str, *, kind: RunKind) -> tuple[CertificationRun, str | None]:
    """The run of ``run_key`` (created, not yet stored, when new) and its current status (None when new).

    Serializes everything that creates or restarts the run of one key (a task and its overlapping retry): the
    second caller waits for the first to commit, then finds and reuses its row instead of inserting a duplicate."""
    from sqlalchemy import text

    s.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:key))"), {"ns": _RUN_KEY_LOCK, "key": run_key})
    run = s.execute(select(CertificationRun).where(CertificationRun.run_key == run_key)
                    .with_for_update()).scalar_one_or_none()
    if run is None:
        return CertificationRun(run_key=run_key, kind=kind), None
    if _kind(run) != kind:
        raise LifecycleError(f"run key {run_key!r} belongs to a {run.kind} run, not a {kind} run")
    return run, run.status


def start_run(s: Session, run: CertificationRun, previous: str | None, *, actor: str, payload: dict[str, Any],
              restart_payload: dict[str, Any] | None = None) -> None:
    """``→ running``: a new run (audited ``run_registered`` / ``recertification_started`` with ``payload``) or
    the same run key started again; a restart is audited (``run_restarted``) only when ``restart_payload`` is
    given, so a re-run that changes nothing adds no event."""
    _allow_run(run, previous, "running", "starting")
    run.status = "running"
    run.awaiting_since = None
    if _kind(run) == CERTIFICATION:
        # A certification restarts from scratch; a recertification re-run keeps its verdict's reasons and time
        # until :func:`decide` finds the verdict changed (re-running a day replaces the same rows).
        run.reasons = []
        run.decided_at = None
    if previous is None:
        s.add(run)
    s.flush()
    if previous is None:
        action = "run_registered" if _kind(run) == CERTIFICATION else "recertification_started"
        audit.append(s, actor=actor, action=action, entity_type="run", entity_id=run.id, payload=payload)
    elif restart_payload is not None:
        audit.append(s, actor=actor, action=f"{_ACTION_PREFIX[_kind(run)]}_restarted", entity_type="run",
                     entity_id=run.id, payload={"previous_status": previous, **restart_payload})


def record_error(s: Session, run: CertificationRun, previous: str | None, reasons: list[str], *, actor: str,
                 payload: dict[str, Any], now: datetime | None = None, only_if_changed: bool = False) -> bool:
    """``→ error``: the run could not be judged (bad input at registration, a failing gate, no current data).

    Audited as ``run_error`` / ``recertification_error`` with ``payload`` (plus the previous status); with
    ``only_if_changed`` a repeat of the same error adds nothing (recertification re-runs). True when audited."""
    _allow_run(run, previous, "error", "recording an error")
    changed = previous != "error" or list(run.reasons or []) != reasons
    run.status = "error"
    run.reasons = reasons
    run.awaiting_since = None
    if previous is None:
        s.add(run)
    s.flush()
    if only_if_changed and not changed:
        return False
    run.decided_at = now or utcnow()
    audit.append(s, actor=actor, action=f"{_ACTION_PREFIX[_kind(run)]}_error", entity_type="run", entity_id=run.id,
                 payload={**payload, "previous_status": previous})
    return True


def verdict(kind: RunKind, errors: list[str], failures: list[str], inconclusive: list[str] | None = None,
            action: str = "reject") -> tuple[str, list[str]]:
    """What the gate's findings mean for a run of ``kind``: any stage error → ``error``; any failed required check
    → ``rejected`` (certification) / ``failed`` (recertification); else ``awaiting_signoff`` / ``passed``.

    ``inconclusive`` (one line per required check whose interval straddles its bound) does what the tier's
    ``inconclusive.action`` says for a certification: ``reject`` → ``rejected``; ``accept_risk`` or ``warn`` →
    ``awaiting_signoff`` with the lines as reasons (the findings register holds what must be accepted). A
    recertification never fails on it: ``passed``, the lines kept as reasons (the certificate needs attention)."""
    pending = list(inconclusive or [])
    if errors:
        return "error", errors + failures
    if kind != CERTIFICATION:
        return ("failed", failures) if failures else ("passed", pending)
    if failures:
        return "rejected", failures + (pending if action == "reject" else [])
    if pending and action == "reject":
        return "rejected", pending
    return "awaiting_signoff", pending


def decide(s: Session, run: CertificationRun, status: str, reasons: list[str], *,
           baseline: tuple[str | None, list[Any]], payload: dict[str, Any] | None = None,
           now: datetime | None = None) -> bool:
    """The gate's verdict (from :func:`verdict`) becomes the run's state. Audited (``run_<status>`` /
    ``recertification_<status>``) only when it differs from ``baseline`` (the verdict the run had before), so
    deciding again on the same results adds nothing. True when the verdict changed."""
    _allow_run(run, run.status, status, f"the verdict {status}")
    now = now or utcnow()
    changed = baseline != (status, reasons)
    run.status = status
    run.reasons = reasons
    if changed or run.decided_at is None:
        run.decided_at = now
    if status == "awaiting_signoff" and (changed or run.awaiting_since is None):
        run.awaiting_since = now
    elif status != "awaiting_signoff":
        run.awaiting_since = None
    if changed:
        audit.append(s, actor=SYSTEM, action=f"{_ACTION_PREFIX[_kind(run)]}_{status}", entity_type="run",
                     entity_id=run.id, payload={**(payload or {}), "previous_status": baseline[0], "reasons": reasons})
    return changed


def waiting_runs_to_supersede(s: Session, run: CertificationRun) -> list[CertificationRun]:
    """The other certification runs of ``run``'s model version still awaiting sign-off, locked. Call it with the
    model version row locked (:func:`lock_model_version`), before the transaction's first audit event."""
    if run.model_version_id is None:
        return []
    return list(s.execute(
        select(CertificationRun)
        .where(CertificationRun.model_version_id == run.model_version_id, CertificationRun.id != run.id,
               CertificationRun.kind == CERTIFICATION, CertificationRun.status == "awaiting_signoff")
        .order_by(CertificationRun.created_at).with_for_update()).scalars())


def supersede_run(s: Session, old: CertificationRun, newer: CertificationRun) -> None:
    """``awaiting_signoff → superseded``: a newer run of the same model version reached sign-off; approvals of
    the old run can no longer certify anything (its sensor ends as not awaiting)."""
    _allow_run(old, old.status, "superseded", "superseding")
    old.status = "superseded"
    old.reasons = [f"superseded by run {newer.id} of the same model version, which reached awaiting sign-off "
                   f"(evidence {newer.evidence_digest[:12]})"]
    old.decided_at = utcnow()
    audit.append(s, actor=SYSTEM, action="run_superseded", entity_type="run", entity_id=old.id,
                 payload={"previous_status": "awaiting_signoff", "superseded_by": newer.id,
                          "superseded_by_evidence_digest": newer.evidence_digest})


def signoff_timeout(s: Session, run: CertificationRun) -> bool:
    """``awaiting_signoff → signoff_timeout``: a timeout never approves. False (nothing done) when the run is no
    longer awaiting sign-off (it was decided meanwhile: the sensor's view was stale)."""
    if run.status != "awaiting_signoff":
        return False
    _allow_run(run, run.status, "signoff_timeout", "a sign-off timeout")
    run.status = "signoff_timeout"
    run.reasons = ["required approvals were not given before the sign-off timeout"]
    audit.append(s, actor=SYSTEM, action="run_signoff_timeout", entity_type="run", entity_id=run.id,
                 payload={"awaiting_since": run.awaiting_since})
    return True


def decline(s: Session, run: CertificationRun, *, actor: str, role: str, reason: str) -> None:
    """``awaiting_signoff → declined``: an approver said no (governance checked who may)."""
    _allow_run(run, run.status, "declined", "a decline")
    run.status = "declined"
    run.reasons = [f"declined by {actor} ({role}): {reason}"]
    audit.append(s, actor=actor, action="run_declined", entity_type="run", entity_id=run.id,
                 payload={"reason": reason})


# ------------------------------------------------------------------------------------------- history
@dataclass(frozen=True)
class History:
    """A certification run's state path as its audit events record it."""

    states: tuple[str, ...]

    @property
    def last(self) -> str | None:
        return self.states[-1] if self.states else None


def replay(actions: Iterable[str], kind: RunKind = CERTIFICATION) -> History:
    """The state path the audit actions of one run describe; a step no transition allows is a LifecycleError
    naming it (e.g. ``rejected → certified``)."""
    states: list[str] = []
    for action in actions:
        to = RUN_STATE_EVENTS.get(action)
        if to is None:
            continue  # stage results, sign-offs: not state changes
        frm = states[-1] if states else None
        if to not in RUN_TRANSITIONS[kind].get(frm, frozenset()):
            raise LifecycleError(f"the recorded history has the illegal step {frm or 'new'} → {to} ({action})")
        states.append(to)
    return History(tuple(states))


def verify_history(s: Session, run: CertificationRun, *, expect: str) -> History:
    """Check that ``run``'s audited state history is a legal path ending in ``expect`` and that the stored status
    says the same: a status changed in SQL (no transition, no event) is refused here."""
    actions = s.execute(select(AuditEvent.action).where(AuditEvent.entity_type == "run",
                                                        AuditEvent.entity_id == run.id)
                        .order_by(AuditEvent.id)).scalars()
    try:
        history = replay(actions, _kind(run))  # type: ignore[arg-type]
    except LifecycleError as exc:
        raise LifecycleError(f"run {run.id}: {exc}") from exc
    if history.last != expect:
        raise LifecycleError(f"run {run.id}: its audited history ends {history.last or 'nowhere'}, not {expect} "
                             f"(the stored status says {run.status}); the status was not set by the lifecycle")
    if run.status != expect:
        raise LifecycleError(f"run {run.id} is {run.status}, not {expect}")
    return history


# ------------------------------------------------------------------------------------------- certificates
def lock_model_version(s: Session, model_version_id: int) -> ModelVersion:
    """Lock a model version row first: every transition of its runs and certificates takes this lock before the
    others, so two of them (a decide and a promote, a promote and a recertification) serialize, never deadlock."""
    mv = s.get(ModelVersion, model_version_id, with_for_update=True, populate_existing=True)
    if mv is None:
        raise LifecycleError(f"no model version with id {model_version_id}")
    return mv


def valid_certificates(s: Session, mv: ModelVersion) -> list[Certificate]:
    """The model version's valid certificates, locked (call after :func:`lock_model_version`)."""
    return list(s.execute(select(Certificate).where(Certificate.model_version_id == mv.id,
                                                    Certificate.status == "valid")
                          .order_by(Certificate.issued_at).with_for_update()).scalars())


def certify(s: Session, run: CertificationRun, mv: ModelVersion, *, approvers: list[dict[str, str]],
            valid_for: timedelta, replaced: list[Certificate], now: datetime | None = None) -> Certificate:
    """``awaiting_signoff → certified`` and a new ``valid`` certificate; the model version's older valid
    certificates (``replaced``, from :func:`valid_certificates`) become ``superseded`` naming the new one.

    The run must be awaiting sign-off by its audited history too (:func:`verify_history`); the caller has
    re-checked the stage results and the quorum."""
    verify_history(s, run, expect="awaiting_signoff")
    _allow_run(run, run.status, "certified", "issuing a certificate")
    now = now or utcnow()
    cert = Certificate(run_id=run.id, model_version_id=mv.id, status="valid", evidence_digest=run.evidence_digest,
                       approvers=approvers, valid_from=now, valid_until=now + valid_for)
    s.add(cert)
    s.flush()
    for old in replaced:
        supersede_certificate(s, old, cert)
    run.status = "certified"
    mv.status = "certified"
    audit.append(s, actor=SYSTEM, action="run_certified", entity_type="run", entity_id=run.id,
                 payload={"certificate": cert.id, "approvers": approvers})
    audit.append(s, actor=SYSTEM, action="certificate_issued", entity_type="certificate", entity_id=cert.id,
                 payload={"run": run.id, "model": mv.name, "version": mv.version, "valid_until": cert.valid_until,
                          "evidence_digest": cert.evidence_digest})
    return cert


def supersede_certificate(s: Session, old: Certificate, newer: Certificate) -> None:
    """``valid → superseded``: a newer certificate of the same model version replaces it (not a revocation:
    nothing was wrong with it)."""
    _allow_cert(old, "superseded", "superseding")
    old.status = "superseded"
    old.status_reason = f"superseded by certificate {newer.id} (run {newer.run_id})"
    audit.append(s, actor=SYSTEM, action="certificate_superseded", entity_type="certificate", entity_id=old.id,
                 payload={"superseded_by": newer.id, "run": newer.run_id, "reason": old.status_reason})


def _other_valid(s: Session, cert: Certificate) -> bool:
    return s.execute(select(Certificate.id).where(Certificate.model_version_id == cert.model_version_id,
                                                  Certificate.id != cert.id, Certificate.status == "valid")
                     ).first() is not None


def expire(s: Session, cert: Certificate, mv: ModelVersion) -> None:
    """``valid → expired``: its validity ended. The model version is expired unless another certificate of it is
    still valid."""
    _allow_cert(cert, "expired", "expiry")
    cert.status = "expired"
    cert.status_reason = f"validity ended {cert.valid_until.isoformat()}"
    if mv.status == "certified" and not _other_valid(s, cert):
        mv.status = "expired"
    audit.append(s, actor=SYSTEM, action="certificate_expired", entity_type="certificate", entity_id=cert.id,
                 payload={"model": mv.name, "version": mv.version, "valid_until": cert.valid_until})


def suspend(s: Session, cert: Certificate, mv: ModelVersion, *, reason: str, payload: dict[str, Any],
            now: datetime | None = None) -> None:
    """``valid → suspended`` (a recertification failed); the model version too."""
    _allow_cert(cert, "suspended", "suspension")
    cert.status = "suspended"
    cert.status_reason = reason
    cert.last_checked_at = now or utcnow()
    mv.status = "suspended"
    audit.append(s, actor=SYSTEM, action="certificate_suspended", entity_type="certificate", entity_id=cert.id,
                 payload={"model": mv.name, "version": mv.version, **payload})


def mark_checked(s: Session, cert: Certificate, mv: ModelVersion, *, payload: dict[str, Any],
                 now: datetime | None = None) -> None:
    """A recertification passed: the certificate stays ``valid`` (no transition), ``last_checked_at`` moves,
    audited as ``certificate_checked``."""
    if cert.status != "valid":
        raise LifecycleError(f"certificate {cert.id} is {cert.status}: only a valid certificate is re-checked")
    cert.last_checked_at = now or utcnow()
    audit.append(s, actor=SYSTEM, action="certificate_checked", entity_type="certificate", entity_id=cert.id,
                 payload={"model": mv.name, "version": mv.version, **payload})


def revoke(s: Session, cert: Certificate, mv: ModelVersion | None, *, actor: str, reason: str,
           payload: dict[str, Any]) -> CertificateStatus:
    """``→ revoked`` (by a holder of a certification role; governance checked who). Returns the previous status."""
    previous: CertificateStatus = cert.status
    if previous == "revoked":
        raise LifecycleError(f"certificate {cert.id} is already revoked ({cert.status_reason})")
    _allow_cert(cert, "revoked", "revocation")
    cert.status = "revoked"
    cert.status_reason = f"revoked by {actor}: {reason}"
    if mv is not None and mv.status in ("certified", "suspended") and not _other_valid(s, cert):
        mv.status = "revoked"
    audit.append(s, actor=actor, action="certificate_revoked", entity_type="certificate", entity_id=cert.id,
                 payload={"previous_status": previous, "reason": reason, **payload})
    return previous

