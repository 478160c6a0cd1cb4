"""The audit chain itself: keys, row hashes, appending a row, the chain head.

What every writer of the chain needs, and all that :mod:`modelcert.seal` and :mod:`modelcert.checkpoints` need:
they build on it, and :mod:`modelcert.audit` (which re-exports it) checks the chain, the seals and the
checkpoints together. Kept apart from that verification so the three modules do not import one another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.orm import Session

from modelcert.db.models import AuditEvent
from modelcert.errors import ModelcertError

GENESIS = "0" * 64
#: Any constant: serializes writers of the chain (held until the transaction ends).
_CHAIN_LOCK = 7305_1130
#: The signing key (a random secret of at least 16 characters, e.g. ``openssl rand -hex 32``).
ENV_KEY = "MODELCERT_AUDIT_KEY"
#: Retired keys, comma-separated: rows they signed still verify; nothing new is signed with them.
ENV_OLD_KEYS = "MODELCERT_AUDIT_OLD_KEYS"
#: Payload field that names the algorithm and key of a signed row (inside the hashed content).
MARK = "_chain"
HMAC_ALG = "hmac-sha256"
#: The action of the event that seals evidence rows: :mod:`modelcert.seal` writes it, ``audit.walk_chain`` collects it.
SEAL_ACTION = "rows_sealed"
_MIN_KEY_CHARS = 16


class AuditKeyError(ModelcertError):
    """The configured audit key cannot be used."""


@dataclass(frozen=True)
class ChainKey:
    kid: str
    secret: bytes


def _key(raw: str, var: str) -> ChainKey:
    raw = raw.strip()
    if len(raw) < _MIN_KEY_CHARS:
        raise AuditKeyError(f"{var}: a key must be at least {_MIN_KEY_CHARS} characters "
                            "(a random secret, e.g. `openssl rand -hex 32`)")
    secret = raw.encode()
    return ChainKey(kid=hashlib.sha256(b"modelcert-audit-kid\0" + secret).hexdigest()[:16], secret=secret)


def signing_key() -> ChainKey | None:
    """The key new rows are signed with (``MODELCERT_AUDIT_KEY``), or None: plain sha256 chain."""
    raw = os.environ.get(ENV_KEY, "")
    return _key(raw, ENV_KEY) if raw.strip() else None


def verification_keys() -> dict[str, ChainKey]:
    """Every key a signed row may name: the signing key and the retired ones, by key id."""
    keys = [k for k in [signing_key()] if k is not None]
    keys += [_key(part, ENV_OLD_KEYS) for part in os.environ.get(ENV_OLD_KEYS, "").split(",") if part.strip()]
    return {k.kid: k for k in keys}


def mac(key: ChainKey, data: bytes) -> str:
    return hmac.new(key.secret, data, hashlib.sha256).hexdigest()


def canonical(value: Any) -> Any:
    """JSON round trip so the payload hashed is exactly the payload stored (JSONB)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def event_hash(*, ts: datetime, actor: str, action: str, entity_type: str, entity_id: str,
               payload: dict[str, Any], prev_hash: str, key: ChainKey | None = None) -> str:
    """sha256 of the row's canonical content, or its HMAC under ``key`` (same 64 hex characters)."""
    body = {
        "ts": ts.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "payload": payload,
        "prev_hash": prev_hash,
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return mac(key, data) if key is not None else hashlib.sha256(data).hexdigest()


def _row(*, actor: str, action: str, entity_type: str, entity_id: str, payload: dict[str, Any] | None,
         prev_hash: str) -> dict[str, Any]:
    """Column values of the next row, signed when a key is configured."""
    key = signing_key()
    body = dict(payload or {})
    body.pop(MARK, None)
    if key is not None:
        body[MARK] = {"alg": HMAC_ALG, "kid": key.kid}
    body = canonical(body)
    ts = datetime.now(UTC)
    eid = str(entity_id)
    return {"ts": ts, "actor": actor, "action": action, "entity_type": entity_type, "entity_id": eid,
            "payload": body, "prev_hash": prev_hash,
            "hash": event_hash(ts=ts, actor=actor, action=action, entity_type=entity_type, entity_id=eid,
                               payload=body, prev_hash=prev_hash, key=key)}


def _prev_hash(conn: Connection | Session) -> str:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
    return conn.execute(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).scalar() or GENESIS


def append(session: Session, *, actor: str, action: str, entity_type: str, entity_id: str,
           payload: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or rolls back with the change it records).

    A ``certificate_issued`` event also records the chain head it was issued on (``chain_head``), so the
    certificate itself names a point of the chain that a later rewrite cannot match."""
    prev_hash = _prev_hash(session)
    body = dict(payload or {})
    if action == "certificate_issued":
        body.setdefault("chain_head", chain_head(session))
    ev = AuditEvent(**_row(actor=actor, action=action, entity_type=entity_type, entity_id=entity_id,
                           payload=body, prev_hash=prev_hash))
    session.add(ev)
    session.flush()
    return ev


def append_core(conn: Connection, *, actor: str, action: str, entity_type: str, entity_id: str,
                payload: dict[str, Any]) -> int:
    """Append one event through ``conn`` without the ORM: usable inside a flush (the evidence seal)."""
    values = _row(actor=actor, action=action, entity_type=entity_type, entity_id=entity_id, payload=payload,
                  prev_hash=_prev_hash(conn))
    return int(conn.execute(insert(AuditEvent).values(**values).returning(AuditEvent.id)).scalar_one())


def chain_head(session: Session | Connection) -> dict[str, Any]:
    """``{last_id, head_hash, count}`` of the chain as this transaction sees it (``last_id`` 0 when empty)."""
    conn = session.connection() if isinstance(session, Session) else session
    row = conn.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    count = conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    return {"last_id": int(row[0]) if row else 0, "head_hash": row[1] if row else GENESIS, "count": int(count)}
