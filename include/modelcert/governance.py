"""Sign-off rules, in one place for every entry point (CLI today, the web API later).

- Only a run awaiting sign-off can be approved or declined.
- Four eyes: the submitter (the spec's model owner) and whoever triggered the run never sign it off.
- The approver must hold the role, per the roles configuration (data, not code).
- One person counts once per run (a second decision by the same person is refused).
- An approval names the evidence digest it approves; any other digest is refused.
- A decline needs a reason and ends the run as ``declined``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from modelcert import audit
from modelcert.db.models import Signoff
from modelcert.db.session import transaction
from modelcert.errors import SignoffError
from modelcert.pipeline import load_run
from modelcert.spec import parse_spec

ROLES_ENV = "MODELCERT_ROLES_FILE"
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


def record_decision(engine: Engine, run_id: str, who: Identity, *, role: str,
                    decision: Literal["approve", "decline"], evidence_digest: str | None = None,
                    comment: str = "", roles: dict[str, set[str]] | None = None) -> dict[str, object]:
    """Apply every rule, then store the sign-off and its audit event in one transaction."""
    if decision not in ("approve", "decline"):
        raise SignoffError(f"decision {decision!r} is not allowed; use approve or decline", code="invalid")
    if decision == "decline" and not comment.strip():
        raise SignoffError("a decline needs a reason (--reason)", code="invalid")
    held = roles_of(who.name, roles)
    with transaction(engine) as s:
        run = load_run(s, run_id)
        # Lock the run row: two approvers racing cannot both pass the checks below on stale state.
        s.refresh(run, with_for_update=True)
        if run.status != "awaiting_signoff":
            raise SignoffError(f"run {run_id} is {run.status}, not awaiting sign-off", code="not_awaiting")
        if who.name in {run.submitter, run.triggered_by}:
            raise SignoffError(
                f"four-eyes rule: {who.name} submitted or triggered run {run_id} and cannot sign it off", code="four_eyes"
            )
        required = parse_spec(run.spec).required_approvals
        if role not in required:
            raise SignoffError(f"role {role!r} is not required for this run; required: {sorted(required)}",
                               code="role_not_required")
        if role not in held:
            raise SignoffError(f"{who.name} does not hold the role {role!r} (holds: {sorted(held) or 'none'})",
                               code="forbidden")
        digest = evidence_digest or run.evidence_digest
        if digest != run.evidence_digest:
            raise SignoffError(
                f"evidence digest {digest} is not this run's ({run.evidence_digest}): the model, data or spec "
                "changed since you reviewed it; review the current evidence", code="evidence_mismatch"
            )
        earlier = s.execute(select(Signoff).where(Signoff.run_id == run_id, Signoff.approver == who.name)).scalar_one_or_none()
        if earlier is not None:
            raise SignoffError(f"{who.name} already {earlier.decision}d run {run_id} (as {earlier.role}); "
                               "one person counts once", code="duplicate")
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
        if decision == "decline":
            run.status = "declined"
            run.reasons = [f"declined by {who.name} ({role}): {comment}"]
            audit.append(s, actor=who.name, action="run_declined", entity_type="run", entity_id=run_id,
                         payload={"reason": comment})
        return {"run_id": run_id, "approver": who.name, "role": role, "decision": decision,
                "evidence_digest": digest, "run_status": run.status}
