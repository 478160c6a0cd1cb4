"""Tamper-evident audit log: every row's hash covers its content and the previous row's hash.

The table is append-only in the database (a trigger refuses UPDATE, DELETE and TRUNCATE). Someone with
superuser rights can still disable the trigger; ``verify`` then finds the first row whose content, order
or predecessor no longer matches its hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from modelcert.db.models import AuditEvent

GENESIS = "0" * 64
#: Any constant: serializes writers of the chain (held until the transaction ends).
_CHAIN_LOCK = 7305_1130


def canonical(value: Any) -> Any:
    """JSON round trip so the payload hashed is exactly the payload stored (JSONB)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def event_hash(*, ts: datetime, actor: str, action: str, entity_type: str, entity_id: str,
               payload: dict[str, Any], prev_hash: str) -> str:
    body = {
        "ts": ts.astimezone(timezone.utc).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "payload": payload,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def append(session: Session, *, actor: str, action: str, entity_type: str, entity_id: str,
           payload: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or rolls back with the change it records)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
    prev = session.execute(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).scalar()
    prev_hash = prev or GENESIS
    ts = datetime.now(timezone.utc)
    body = canonical(payload or {})
    ev = AuditEvent(ts=ts, actor=actor, action=action, entity_type=entity_type, entity_id=str(entity_id),
                    payload=body, prev_hash=prev_hash,
                    hash=event_hash(ts=ts, actor=actor, action=action, entity_type=entity_type,
                                    entity_id=str(entity_id), payload=body, prev_hash=prev_hash))
    session.add(ev)
    session.flush()
    return ev


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    first_bad_id: int | None = None
    problem: str = ""


def verify(session: Session) -> VerifyResult:
    """Walk the chain in id order; report the first row that does not match."""
    prev_hash = GENESIS
    n = 0
    for ev in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars():
        n += 1
        if ev.prev_hash != prev_hash:
            return VerifyResult(False, n, ev.id, f"row {ev.id}: prev_hash does not match the previous row's hash "
                                                 "(a row before it was deleted, inserted or reordered)")
        expected = event_hash(ts=ev.ts, actor=ev.actor, action=ev.action, entity_type=ev.entity_type,
                              entity_id=ev.entity_id, payload=canonical(ev.payload), prev_hash=ev.prev_hash)
        if expected != ev.hash:
            return VerifyResult(False, n, ev.id, f"row {ev.id}: content does not match its hash (the row was edited)")
        prev_hash = ev.hash
    return VerifyResult(True, n)
