"""Sign-off rules, in one place for every entry point (CLI today, the web API later).

- Only a run awaiting sign-off can be approved or declined.
- Four eyes: the submitter (the spec's model owner) and whoever triggered the run never sign it off.
- The approver must hold the role, per the roles configuration (data, not code).
- One person counts once per run (a second decision by the same person is refused).
- An approval names the evidence digest it approves; any other digest is refused.
- A decline needs a reason and ends the run as ``declined``.
- No approval while a finding that blocks sign-off is open (``modelcert.findings``): it must first be accepted,
  by a holder of the role the risk policy names, with a written reason and the evidence digest the acceptor saw
  (:func:`accept_findings`; the same four-eyes and digest rules as a sign-off). A decline is always possible.
- The quorum: per role the spec's ``required_approvals`` (the one place it is read from), counting only approvals
  of the run's evidence digest, one per person (:func:`quorum_missing`).

State changes (declined, revoked) are made by ``modelcert.lifecycle``; this module decides who may make them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from modelcert import audit, findings, lifecycle
from modelcert.db.models import CertificationRun, Finding, Signoff
from modelcert.db.session import reader, transaction
from modelcert.errors import LifecycleError, SignoffError
from modelcert.lifecycle import load_run
from modelcert.refs import shorten
from modelcert.spec import parse_spec

ROLES_ENV = "MODELCERT_ROLES_FILE"
#: Postgres NOTIFY channel announcing a sign-off decision (payload: the run id).
SIGNOFF_CHANNEL = "modelcert_signoff"
DEFAULT_ROLES_FILE = Path(__file__).resolve().parents[1] / "config" / "roles.yaml"


@dataclass(frozen=True)
class Identity:
    """Who acts, and how that was established (e.g. ``api:airflow-token``, ``cli:os-user``)."""

    name: str
    authenticated_via: str


def load_roles(path: str | Path | None = None) -> dict[str, set[str]]:
    """role -> users holding it, from YAML ``{roles: {model_validator: [bob], risk_officer: [dave]}}``."""
    p = Path(path or os.environ.get(ROLES_ENV) or DEFAULT_ROLES_FILE)
    if not p.is_file():
        raise SignoffError(f"roles configuration {str(p)!r} does not exist (set {ROLES_ENV})", code="config")
    data = yaml.safe_load(p.read_text()) or {}
    roles = data.get("roles")
    if not isinstance(roles, dict):
        raise SignoffError(f"roles configuration {str(p)!r}: expected a mapping under 'roles'", code="config")
    return {str(role): {str(u) for u in (users or [])} for role, users in roles.items()}


def roles_of(user: str, roles: dict[str, set[str]] | None = None) -> set[str]:
    roles = roles if roles is not None else load_roles()
    return {role for role, users in roles.items() if user in users}


def quorum_missing(required: dict[str, int], approvals: list[Signoff], digest: str) -> dict[str, int]:
    """Approvals still needed per role (``required`` is the spec's ``required_approvals``); only approvals of this
    evidence digest count, one per person."""
    counted: dict[str, set[str]] = {}
    for a in approvals:
        if a.decision == "approve" and a.evidence_digest == digest:
            counted.setdefault(a.role, set()).add(a.approver)
    return {role: n - len(counted.get(role, set())) for role, n in required.items()
            if n - len(counted.get(role, set())) > 0}


def _check(run: CertificationRun, name: str, role: str, held: set[str], *, digest: str,
           earlier: Signoff | None, blocking: list[Finding] | None = None) -> None:
    """Every rule for ``name`` signing ``run`` as ``role``; raises SignoffError naming the first one broken."""
    if run.status != "awaiting_signoff":
        raise SignoffError(f"run {run.id} is {run.status}, not awaiting sign-off", code="not_awaiting")
    if name in {run.submitter, run.triggered_by}:
        raise SignoffError(
            f"four-eyes rule: {name} submitted or triggered run {run.id} and cannot sign it off", code="four_eyes"
        )
    required = parse_spec(run.spec).required_approvals
    if role not in required:
        raise SignoffError(f"role {role!r} is not required for this run; required: {sorted(required)}",
                           code="role_not_required")
    if role not in held:
        raise SignoffError(f"{name} does not hold the role {role!r} (holds: {sorted(held) or 'none'})",
                           code="forbidden")
    if digest != run.evidence_digest:
        raise SignoffError(
            f"evidence digest {shorten(digest)} is not this run's ({run.evidence_digest}): the model, data or spec "
            "changed since you reviewed it; review the current evidence", code="evidence_mismatch"
        )
    if earlier is not None:
        raise SignoffError(f"{name} already {earlier.decision}d run {run.id} (as {earlier.role}); "
                           "one person counts once", code="duplicate")
    if blocking:
        shown = ", ".join(f"{f.id} {f.key} ({f.severity}, {f.verdict}; by a {f.accept_role})" for f in blocking[:3])
        more = f" (+{len(blocking) - 3} more)" if len(blocking) > 3 else ""
        raise SignoffError(f"run {run.id} has {len(blocking)} open finding(s) that must be accepted before it is "
                           f"approved: {shown}{more}; accept them with a reason (`modelcert accept-risk`) or decline",
                           code="findings_open")


def record_decision(engine: Engine, run_id: str, who: Identity, *, role: str,
                    decision: Literal["approve", "decline"], evidence_digest: str,
                    comment: str = "", roles: dict[str, set[str]] | None = None) -> dict[str, object]:
    """Apply every rule, then store the sign-off and its audit event in one transaction.

    ``evidence_digest`` is the digest the approver *saw*; it is required and never filled in from the run
    (a default would turn "approve what I reviewed" into "approve whatever is there now")."""
    if not isinstance(evidence_digest, str) or not evidence_digest.strip():
        raise SignoffError("evidence_digest: required — the evidence digest you reviewed (64 hex characters, as "
                           "`modelcert report RUN` or the run page shows it)", code="invalid")
    if decision not in ("approve", "decline"):
        raise SignoffError(f"decision {decision!r} is not allowed; use approve or decline", code="invalid")
    if decision == "decline" and not comment.strip():
        raise SignoffError("a decline needs a reason (--reason)", code="invalid")
    held = roles_of(who.name, roles)
    with transaction(engine) as s:
        run = load_run(s, run_id)
        # Lock the run row: two approvers racing cannot both pass the checks below on stale state.
        s.refresh(run, with_for_update=True)
        digest = evidence_digest.strip()
        earlier = s.execute(select(Signoff).where(Signoff.run_id == run_id,
                                                  Signoff.approver == who.name)).scalar_one_or_none()
        _check(run, who.name, role, held, digest=digest, earlier=earlier,
               blocking=findings.open_blocking(s, run_id) if decision == "approve" else None)
        so = Signoff(run_id=run_id, approver=who.name, role=role, decision=decision, evidence_digest=digest,
                     comment=comment, authenticated_via=who.authenticated_via)
        s.add(so)
        try:
            s.flush()
        except IntegrityError as exc:
            raise SignoffError(f"{who.name} already signed off run {run_id}", code="duplicate") from exc
        audit.append(s, actor=who.name, action=f"signoff_{decision}", entity_type="run", entity_id=run_id,
                     payload={"role": role, "evidence_digest": digest, "comment": comment,
                              "authenticated_via": who.authenticated_via})
        # Wakes the sign-off trigger at commit (LISTEN modelcert_signoff) instead of it polling faster.
        s.execute(text("SELECT pg_notify(:channel, :run)"), {"channel": SIGNOFF_CHANNEL, "run": run_id})
        if decision == "decline":
            lifecycle.decline(s, run, actor=who.name, role=role, reason=comment)
        return {"run_id": run_id, "approver": who.name, "role": role, "decision": decision,
                "evidence_digest": digest, "run_status": run.status}


def resolve_certificate_id(engine: Engine, ref: str) -> str:
    """A certificate by id or unique id prefix (as ``modelcert certificates`` shows it)."""
    from modelcert.db.models import Certificate
    from modelcert.db.session import reader

    with reader(engine) as s:
        ids = list(s.execute(select(Certificate.id).where(Certificate.id.startswith(ref))).scalars())
    if len(ids) != 1:
        found = "no match" if not ids else f"{len(ids)} matches, give more characters"
        raise SignoffError(f"certificate {ref!r}: {found}", code="not_found")
    return ids[0]


def revoke_certificate(engine: Engine, cert_ref: str, who: Identity, *, reason: str,
                       roles: dict[str, set[str]] | None = None) -> dict[str, object]:
    """Revoke a certificate: only a holder of a certification role, always with a reason, audited."""
    from modelcert.db.models import Certificate

    if not reason.strip():
        raise SignoffError("a revocation needs a reason (--reason)", code="invalid")
    held = roles_of(who.name, roles)
    if not held:
        raise SignoffError(f"{who.name} holds no certification role and cannot revoke certificates", code="forbidden")
    cert_id = resolve_certificate_id(engine, cert_ref)
    with transaction(engine) as s:
        model_version_id = s.execute(select(Certificate.model_version_id).where(Certificate.id == cert_id)).scalar_one()
        mv = lifecycle.lock_model_version(s, model_version_id)  # the lifecycle's lock order: model version first
        cert = s.get(Certificate, cert_id, with_for_update=True)
        assert cert is not None
        if cert.status == "revoked":
            raise SignoffError(f"certificate {cert_id} is already revoked ({cert.status_reason})", code="duplicate")
        try:
            previous = lifecycle.revoke(s, cert, mv, actor=who.name, reason=reason,
                                        payload={"roles": sorted(held), "authenticated_via": who.authenticated_via})
        except LifecycleError as exc:
            raise SignoffError(str(exc), code="invalid") from exc
        return {"certificate_id": cert_id, "status": cert.status, "previous_status": previous, "reason": reason}


def signoff_options(engine: Engine, run_id: str, user: str,
                    roles: dict[str, set[str]] | None = None) -> dict[str, object]:
    """What ``user`` could sign on this run right now, judged by the same rules ``record_decision``
    enforces (one copy: ``_check``). For display only, e.g. which buttons a page offers; a decision is
    still refused or accepted by ``record_decision`` alone, on the locked run row."""
    held = roles_of(user, roles)
    with reader(engine) as s:
        run = load_run(s, run_id)
        earlier = s.execute(select(Signoff).where(Signoff.run_id == run_id,
                                                  Signoff.approver == user)).scalar_one_or_none()
        required = parse_spec(run.spec).required_approvals if run.spec else {}
        blocking = findings.open_blocking(s, run_id)
        allowed: list[str] = []
        refused: dict[str, dict[str, str]] = {}
        for role in sorted(required):
            try:
                _check(run, user, role, held, digest=run.evidence_digest, earlier=earlier, blocking=blocking)
                allowed.append(role)
            except SignoffError as exc:
                refused[role] = {"code": exc.code, "message": str(exc)}
    return {"user": user, "held_roles": sorted(held), "required": required, "allowed_roles": allowed,
            "refused": refused}


# --------------------------------------------------------------------------------------------- findings
def _acceptable(run: CertificationRun, name: str, role: str, held: set[str], f: Finding) -> None:
    """Every rule for ``name`` accepting finding ``f`` as ``role`` (digest and reason are checked by the caller)."""
    if run.status != "awaiting_signoff":
        raise SignoffError(f"run {run.id} is {run.status}, not awaiting sign-off: its findings cannot be accepted",
                           code="not_awaiting")
    if name in {run.submitter, run.triggered_by}:
        raise SignoffError(f"four-eyes rule: {name} submitted or triggered run {run.id} and cannot accept its "
                           "findings", code="four_eyes")
    if f.status != "open":
        raise SignoffError(f"finding {f.id} ({f.key}) is {f.status}"
                           + (f" (by {f.accepted_by})" if f.accepted_by else "") + "; only an open finding is accepted",
                           code="duplicate" if f.status == "accepted" else "invalid")
    if role != f.accept_role:
        raise SignoffError(f"finding {f.id} ({f.key}) is accepted by a {f.accept_role} (the risk policy), not a "
                           f"{role}", code="role_not_required")
    if role not in held:
        raise SignoffError(f"{name} does not hold the role {role!r} (holds: {sorted(held) or 'none'})",
                           code="forbidden")


def accept_findings(engine: Engine, run_id: str, who: Identity, *, role: str, reason: str, evidence_digest: str,
                    finding_ids: list[int] | None = None, roles: dict[str, set[str]] | None = None
                    ) -> dict[str, object]:
    """Accept open findings of a run awaiting sign-off: the given ``finding_ids``, or with None every open finding
    ``role`` may accept. Every rule of a sign-off applies (role held, four eyes, the digest the acceptor saw —
    required, never filled in), plus: a written reason, the role the policy names for that finding. One audit
    event per acceptance, in the transaction that records it; all or nothing."""
    if not isinstance(evidence_digest, str) or not evidence_digest.strip():
        raise SignoffError("evidence_digest: required — the evidence digest you reviewed (64 hex characters, as "
                           "`modelcert report RUN` or the run page shows it)", code="invalid")
    if not isinstance(reason, str) or not reason.strip():
        raise SignoffError("reason: required — why the risk is acceptable, in your words (--reason)", code="invalid")
    held = roles_of(who.name, roles)
    digest = evidence_digest.strip()
    with transaction(engine) as s:
        run = load_run(s, run_id)
        s.refresh(run, with_for_update=True)
        rows = findings.of_run(s, run_id)
        if finding_ids is None:
            chosen = [f for f in rows if f.status == "open" and f.accept_role == role]
            if not chosen:
                raise SignoffError(f"run {run_id} has no open finding a {role} accepts", code="invalid")
        else:
            by_id = {f.id: f for f in rows}
            unknown = [i for i in finding_ids if i not in by_id]
            if unknown or not finding_ids:
                raise SignoffError(f"finding: {unknown or 'none given'} is not a finding of run {run_id}; its "
                                   f"findings: {sorted(by_id) or 'none'}", code="not_found")
            chosen = [by_id[i] for i in dict.fromkeys(finding_ids)]
        for f in chosen:
            _acceptable(run, who.name, role, held, f)
        if digest != run.evidence_digest:
            raise SignoffError(
                f"evidence digest {shorten(digest)} is not this run's ({run.evidence_digest}): the model, data or spec "
                "changed since you reviewed it; review the current evidence", code="evidence_mismatch")
        for f in chosen:
            s.execute(select(Finding.id).where(Finding.id == f.id).with_for_update())
        accepted = findings.accept_rows(s, run, chosen, who=who.name, via=who.authenticated_via, role=role,
                                        reason=reason.strip(), digest=digest)
        # The sign-off trigger waits for acceptances too: wake it at commit.
        s.execute(text("SELECT pg_notify(:channel, :run)"), {"channel": SIGNOFF_CHANNEL, "run": run_id})
        still = [f.id for f in findings.open_blocking(s, run_id)]
        return {"run_id": run_id, "accepted": accepted, "by": who.name, "role": role, "evidence_digest": digest,
                "still_blocking": still}


def acceptance_options(engine: Engine, run_id: str, user: str,
                       roles: dict[str, set[str]] | None = None) -> dict[str, object]:
    """Which open findings ``user`` could accept right now, by the rules :func:`accept_findings` applies (display
    only: e.g. which accept forms a page offers)."""
    held = roles_of(user, roles)
    with reader(engine) as s:
        run = load_run(s, run_id)
        allowed: list[int] = []
        refused: dict[int, dict[str, str]] = {}
        for f in findings.of_run(s, run_id):
            if f.status != "open":
                continue
            try:
                _acceptable(run, user, f.accept_role, held, f)
                allowed.append(f.id)
            except SignoffError as exc:
                refused[f.id] = {"code": exc.code, "message": str(exc)}
    return {"user": user, "held_roles": sorted(held), "allowed": allowed, "refused": refused}


def edit_remediation(engine: Engine, run_id: str, finding_id: int, who: Identity, *, text_: str,
                     roles: dict[str, set[str]] | None = None) -> dict[str, object]:
    """A validator (holder of ``model_validator``, or of the role that accepts the finding) writes the finding's
    remediation: what must change before it can be closed. Audited."""
    held = roles_of(who.name, roles)
    with transaction(engine) as s:
        load_run(s, run_id)
        f = s.get(Finding, finding_id, with_for_update=True)
        if f is None or f.run_id != run_id:
            raise SignoffError(f"finding {finding_id} is not a finding of run {run_id}", code="not_found")
        if not ({"model_validator", f.accept_role} & held):
            raise SignoffError(f"{who.name} holds neither model_validator nor {f.accept_role}; only a validator "
                               "edits a remediation", code="forbidden")
        findings.set_remediation(s, f, who=who.name, text=text_.strip())
        return findings.as_dict(f)
