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

from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelcert.audit_chain import (
    ENV_KEY,
    ENV_OLD_KEYS,
    GENESIS,
    HMAC_ALG,
    MARK,
    SEAL_ACTION,
    AuditKeyError,
    ChainKey,
    append,
    append_core,
    canonical,
    chain_head,
    event_hash,
    mac,
    signing_key,
    verification_keys,
)
from modelcert.db.models import AuditEvent

#: The chain's primitives live in :mod:`modelcert.audit_chain`; callers keep using them through this module.
__all__ = [
    "ENV_KEY", "ENV_OLD_KEYS", "GENESIS", "HMAC_ALG", "MARK", "SEAL_ACTION", "AuditKeyError", "ChainKey",
    "ChainWalk", "VerifyResult", "append", "append_core", "canonical", "chain_head", "event_hash", "mac",
    "signing_key", "verification_keys", "verify", "walk_chain",
]

#: Problems kept in a result (the count of the rest is reported).
_MAX_PROBLEMS = 200


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
