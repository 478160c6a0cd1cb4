"""Tamper-evident audit log: every row's hash covers its content and the previous row's hash.

The table is append-only in the database (a trigger refuses UPDATE, DELETE and TRUNCATE). Someone with
superuser rights can still disable the trigger, so the chain is anchored outside the database too:

* **Key.** With ``MODELCERT_AUDIT_KEY`` set, a row's ``hash`` is an HMAC-SHA256 under that key instead of a
  plain sha256, and its payload names the key (``_chain: {alg, kid}``; no schema change). Whoever holds only
  database credentials can then neither forge a correctly chained row nor recompute the chain after an edit.
  Without a key the chain is plain sha256: it finds careless edits, not a forger who recomputes it.
* **Checkpoints** (:mod:`modelcert.checkpoints`): the chain head written to a file outside the database at
  every certificate issue and ``audit verify --checkpoint``; truncation and re-chaining show against them.
* **Seals** (:mod:`modelcert.seal`): every evidence row (runs, stage and check results, sign-offs,
  certificates, model versions) is hashed into the chain when written, so editing the evidence itself shows.

:func:`verify` checks all three and names each row that no longer matches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
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
_MIN_KEY_CHARS = 16
#: Problems kept in a result (the count of the rest is reported).
_MAX_PROBLEMS = 200


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


@dataclass
class ChainWalk:
    """What one pass over the chain found, for the seal and checkpoint checks that follow it."""

    ids: list[int] = field(default_factory=list)
    hashes: dict[int, str] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)
    #: (event id, payload) of every ``rows_sealed`` event, in chain order.
    seals: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    signed: int = 0
    unsigned_ids: list[int] = field(default_factory=list)
    unverifiable: int = 0

    def count_through(self, last_id: int) -> int:
        return bisect_right(self.ids, last_id)


def walk_chain(session: Session, keys: dict[str, ChainKey]) -> ChainWalk:
    """One pass in id order: linkage, each row's hash or HMAC, and no unsigned row after a signed one."""
    from modelcert.seal import SEAL_ACTION

    walk = ChainWalk()
    prev_hash = GENESIS
    t = AuditEvent.__table__
    for r in session.execute(select(t).order_by(t.c.id)).mappings():
        walk.ids.append(r["id"])
        walk.hashes[r["id"]] = r["hash"]
        if r["prev_hash"] != prev_hash:
            walk.problems.append((r["id"], (f"row {r['id']}: prev_hash does not match the previous row's hash "
                                           "(a row before it was deleted, inserted or reordered)")))
        payload = canonical(r["payload"])
        mark = payload.get(MARK) if isinstance(payload, dict) else None
        fields = {k: r[k] for k in ("ts", "actor", "action", "entity_type", "entity_id", "prev_hash")}
        if isinstance(mark, dict) and mark.get("alg") == HMAC_ALG:
            walk.signed += 1
            key = keys.get(str(mark.get("kid")))
            if key is None:
                walk.unverifiable += 1
                if keys:
                    walk.problems.append((r["id"], (f"row {r['id']}: signed by key {str(mark.get('kid'))[:20]}, "
                                                   "which is not configured (MODELCERT_AUDIT_OLD_KEYS)")))
            elif event_hash(**fields, payload=payload, key=key) != r["hash"]:
                walk.problems.append((r["id"], (f"row {r['id']}: content does not match its HMAC (the row was "
                                               "edited or forged without the audit key)")))
        else:
            if event_hash(**fields, payload=payload) != r["hash"]:
                walk.problems.append((r["id"], (f"row {r['id']}: content does not match its hash (the row was "
                                               "edited)")))
            elif keys and walk.signed:
                walk.problems.append((r["id"], (f"row {r['id']}: not signed with the audit key although earlier "
                                               "rows are (forged, or rewritten without the key)")))
            walk.unsigned_ids.append(r["id"])
        if r["action"] == SEAL_ACTION and isinstance(payload, dict):
            walk.seals.append((r["id"], payload))
        prev_hash = r["hash"]
    return walk


@dataclass
class VerifyResult:
    ok: bool
    rows: int
    first_bad_id: int | None = None
    problem: str = ""
    #: Every problem found (chain, checkpoints, evidence rows), first ones first; bounded.
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    #: How strong the check was: what it could and could not establish (shown with the verdict).
    notes: list[str] = field(default_factory=list)
    sealed_rows: int = 0
    checkpoints: int = 0
    mode: str = "sha256"


def verify(session: Session, *, checkpoint_path: Path | None = None) -> VerifyResult:
    """Walk the chain, then recompute every evidence row and compare it with its latest seal, then hold the
    chain against every checkpoint of this database. Reports every row that does not match."""
    from modelcert import checkpoints, seal

    keys = verification_keys()
    walk = walk_chain(session, keys)
    evidence = seal.verify_rows(session, walk.seals)
    marks = checkpoints.check(session, walk, keys, source=checkpoint_path)
    problems = [p for _, p in walk.problems] + marks.problems + evidence.problems
    notes: list[str] = []
    if keys:
        mode = f"{HMAC_ALG} (key {next(iter(keys))})"
        if walk.unsigned_ids and not walk.signed:
            notes.append(f"no row is signed yet: all {len(walk.unsigned_ids)} rows were written without "
                         f"{ENV_KEY}; only checkpoints anchor them")
        elif walk.unsigned_ids:
            notes.append(f"{len(walk.unsigned_ids)} rows written before the key was set are not signed "
                         "(plain sha256; anchored only by checkpoints)")
    else:
        mode = "sha256 (no key)"
        notes.append(f"no {ENV_KEY}: plain sha256 chain, which a holder of database credentials can recompute; "
                     "only checkpoints outside the database detect that")
        if walk.signed:
            notes.append(f"{walk.signed} rows are HMAC-signed; without the key only their linkage was checked")
    notes += marks.notes
    first = walk.problems[0][0] if walk.problems else None
    return VerifyResult(ok=not problems, rows=len(walk.ids), first_bad_id=first,
                        problem=problems[0] if problems else "", problems=problems[:_MAX_PROBLEMS],
                        problem_count=len(problems), notes=notes, sealed_rows=evidence.checked,
                        checkpoints=marks.matched, mode=mode)
