"""The policy in force, as the results database knows it: applied by a policy admin, audited, checked per run.

The policy file alone is not enough: whoever can write it could lower the bar unseen. So a policy takes effect
only through :func:`apply_policy` (``modelcert policy apply FILE --user NAME``): a holder of the
``policy_admin`` role (roles.yaml) applies it; the file is validated, written atomically to the configured
path and recorded as an audit event ``policy_applied`` whose payload holds the version, the old and new sha256
and the full text (so every applied policy can be reproduced from the hash-chained log).

Before a run starts, :func:`ensure_in_force` compares the file in force with the last applied policy and
refuses (one line) when they differ — someone edited the file without ``policy apply``. On a fresh database
with no applied policy yet, the first use records the file in force as applied by ``modelcert (initial)``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from modelcert import audit
from modelcert.db.models import AuditEvent
from modelcert.db.session import reader, transaction
from modelcert.errors import SignoffError
from modelcert.policy import Policy, PolicyError, load_policy, parse_policy, policy_path

ACTION = "policy_applied"
ENTITY = "policy"
ADMIN_ROLE = "policy_admin"
INITIAL_ACTOR = "modelcert (initial)"
#: Serializes "read the last applied policy, maybe record one" (two first runs at once record it once).
_POLICY_LOCK = 7305_1201


@dataclass(frozen=True)
class Applied:
    """One ``policy_applied`` audit event, as read back."""

    version: str
    sha256: str
    applied_by: str
    applied_at: str
    text: str

    @property
    def label(self) -> str:
        return f"policy {self.version} sha256 {self.sha256[:8]}…"


def _applied(ev: AuditEvent) -> Applied:
    p = ev.payload or {}
    return Applied(version=str(p.get("version", "")), sha256=str(p.get("sha256", "")), applied_by=ev.actor,
                   applied_at=ev.ts.isoformat(timespec="seconds"), text=str(p.get("text", "")))


def last_applied(s: Session) -> Applied | None:
    """The policy most recently applied, or None on a database where none was."""
    ev = s.execute(select(AuditEvent).where(AuditEvent.action == ACTION)
                   .order_by(AuditEvent.id.desc()).limit(1)).scalar_one_or_none()
    return _applied(ev) if ev is not None else None


def applied_by_sha(s: Session, sha256: str) -> Policy | None:
    """The applied policy with this sha256, rebuilt from its stored text (how a run's own policy is found)."""
    ev = s.execute(select(AuditEvent).where(AuditEvent.action == ACTION, AuditEvent.entity_id == sha256)
                   .order_by(AuditEvent.id.desc()).limit(1)).scalar_one_or_none()
    if ev is None or not (ev.payload or {}).get("text"):
        return None
    return parse_policy(str(ev.payload["text"]).encode("utf-8"), source=f"audit event {ev.id}")


def _record(s: Session, policy: Policy, *, actor: str, previous: Applied | None, note: str | None = None) -> None:
    payload: dict[str, Any] = {"version": policy.version, "sha256": policy.sha256, "source": policy.source,
                               "previous_version": previous.version if previous else None,
                               "previous_sha256": previous.sha256 if previous else None, "text": policy.text}
    if note:
        payload["note"] = note
    audit.append(s, actor=actor, action=ACTION, entity_type=ENTITY, entity_id=policy.sha256, payload=payload)


def _lock(s: Session) -> None:
    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _POLICY_LOCK})


def ensure_in_force(engine: Engine, policy: Policy | None = None) -> Policy:
    """The policy file in force, provided it is the last applied one (first use: recorded as the initial
    policy). Raises PolicyError, one line, when the file was changed without ``modelcert policy apply``."""
    policy = policy if policy is not None else load_policy()
    with transaction(engine) as s:
        _lock(s)
        last = last_applied(s)
        if last is None:
            _record(s, policy, actor=INITIAL_ACTOR, previous=None,
                    note="first use on this database: the shipped or configured policy file, recorded as applied")
            return policy
    if last.sha256 != policy.sha256:
        raise PolicyError(
            f"policy: the file in force {policy.source} (version {policy.version}, sha256 {policy.sha256[:8]}…) is "
            f"not the last applied {last.label} (by {last.applied_by} at {last.applied_at}); it was changed without "
            "`modelcert policy apply`: apply it (policy_admin) or restore the applied text; no run starts until then")
    return policy


def _write_atomically(target: Path, raw: bytes) -> None:
    """Replace ``target`` with ``raw`` so a reader sees the old or the new file, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".policy-", suffix=".yaml", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def apply_policy(engine: Engine, source: str | Path, *, user: str,
                 roles: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """Validate ``source``, and if ``user`` holds ``policy_admin``: record it (audit ``policy_applied`` with old
    and new sha256 and the text) and write it atomically to the configured policy path, in one transaction —
    if the file cannot be written nothing is recorded. Applying the policy already in force changes nothing."""
    from modelcert.governance import load_roles

    roles = roles if roles is not None else load_roles()
    if user not in roles.get(ADMIN_ROLE, set()):
        raise SignoffError(f"policy apply: {user!r} does not hold the {ADMIN_ROLE} role (roles configuration); "
                           "only a policy admin changes the risk policy", code="forbidden")
    src = Path(source)
    try:
        raw = src.read_bytes()
    except OSError as exc:
        raise PolicyError(f"policy apply: cannot read {str(src)!r}: {exc.strerror or type(exc).__name__}") from None
    new = parse_policy(raw, source=str(src))
    target = policy_path()
    with transaction(engine) as s:
        _lock(s)
        last = last_applied(s)
        on_disk = target.read_bytes() if target.is_file() else b""
        if last is not None and last.sha256 == new.sha256 and on_disk == raw:
            return {"applied": False, "version": new.version, "sha256": new.sha256, "path": str(target),
                    "note": "this policy is already the one in force"}
        new._source = str(target)
        _record(s, new, actor=user, previous=last)
        _write_atomically(target, raw)
    return {"applied": True, "version": new.version, "sha256": new.sha256, "path": str(target),
            "previous_version": last.version if last else None, "previous_sha256": last.sha256 if last else None,
            "applied_by": user}


def show(engine: Engine | None) -> dict[str, Any]:
    """The policy file in force and, when a database is given, the last applied policy and whether they match."""
    policy = load_policy()
    out: dict[str, Any] = {"path": policy.source, "version": policy.version, "sha256": policy.sha256,
                           "tiers": {name: {"mandatory_stages": t.mandatory_stages,
                                            "mandatory_checks": t.mandatory_checks,
                                            "floors": {k: v.text() for k, v in t.floors.items()},
                                            "allow_warning": t.allow_warning,
                                            "min_attacks_executed": t.min_attacks_executed,
                                            "signoff": t.signoff,
                                            "max_validity_days": t.max_validity.total_seconds() / 86400,
                                            "recertify_every_days": t.recertify_every.total_seconds() / 86400,
                                            "statistics": t.statistics.model_dump(),
                                            "inconclusive": t.inconclusive.model_dump(),
                                            "findings": t.findings.model_dump()}
                                     for name, t in policy.tiers.items()}}
    if engine is not None:
        with reader(engine) as s:
            last = last_applied(s)
        out["last_applied"] = (None if last is None else
                               {"version": last.version, "sha256": last.sha256, "by": last.applied_by,
                                "at": last.applied_at})
        out["in_force"] = last is None or last.sha256 == policy.sha256
    return out


def policy_for_run(s: Session, evidence: dict[str, Any] | None) -> Policy:
    """The policy a run was judged under (``run.evidence.policy.sha256``): the file if it still matches, else
    the applied text from the audit log; a run recorded before policies were recorded gets the file in force."""
    recorded = (evidence or {}).get("policy") or {}
    current = load_policy()
    sha = recorded.get("sha256")
    if not sha or sha == current.sha256:
        return current
    found = applied_by_sha(s, str(sha))
    if found is None:
        raise PolicyError(f"policy: the run was judged under policy {recorded.get('version')} sha256 {str(sha)[:8]}…, "
                          "which is neither the file in force nor an applied policy in the audit log")
    return found


def gate_failures(s: Session, run_id: str, results: dict[str, Any]) -> list[str]:
    """The policy's part of the gate for one run (see ``policy_rules.gate_failures``), judged under the policy
    the run recorded. A run without a spec (registration failed) adds nothing."""
    from modelcert.db.models import CertificationRun
    from modelcert.policy_rules import gate_failures as rule
    from modelcert.spec import parse_spec

    run = s.get(CertificationRun, run_id)
    if run is None or not run.spec:
        return []
    return rule(parse_spec(run.spec), results, policy_for_run(s, run.evidence))
