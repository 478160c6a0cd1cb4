"""Chain-head checkpoints kept outside the results database.

Why: whoever holds database credentials can delete the newest audit rows or rewrite the whole chain, and a
chain checked only against itself still looks intact. A line in a file they cannot write — ``{ts, database,
last_id, head_hash, count}``, HMAC'd when ``MODELCERT_AUDIT_KEY`` is set — pins what the chain was: if that row
is gone, its hash differs, or the number of rows up to it changed, ``audit verify`` says so.

Written (appended, one ``write`` per line under an exclusive lock) after every transaction that issues or
changes a certificate commits, and by ``modelcert audit verify --checkpoint`` after a clean verification.
Location: ``MODELCERT_AUDIT_CHECKPOINTS``, else ``$MODELCERT_HOME/audit/checkpoints.jsonl``. Lines name their
database (name @ cluster system identifier), so one file may serve several; a database dropped and recreated
on the same server shows as truncated against the old lines (move the file aside when that is intended).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from modelcert import audit_chain

if TYPE_CHECKING:
    from modelcert.audit import ChainWalk

ENV_PATH = "MODELCERT_AUDIT_CHECKPOINTS"
_FIELDS = ("v", "ts", "database", "last_id", "head_hash", "count", "reason")


def _home() -> Path:
    """Same rule as the CLI's ``modelcert_home`` (a source checkout keeps its state in ``.modelcert``)."""
    env = os.environ.get("MODELCERT_HOME")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo / ".modelcert" if (repo / "pyproject.toml").is_file() else Path.home() / ".modelcert"


def path() -> Path:
    env = os.environ.get(ENV_PATH, "").strip()
    return Path(env) if env else _home() / "audit" / "checkpoints.jsonl"


def _body(line: dict[str, Any]) -> bytes:
    return json.dumps({k: line.get(k) for k in _FIELDS}, sort_keys=True, separators=(",", ":")).encode()


def write(head: dict[str, Any], *, reason: str, target: Path | None = None) -> dict[str, Any]:
    """Append one checkpoint line for ``head`` (from :func:`audit.chain_head` plus ``database``)."""
    line: dict[str, Any] = {"v": 1, "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
                            "database": str(head["database"]), "last_id": int(head["last_id"]),
                            "head_hash": str(head["head_hash"]), "count": int(head["count"]), "reason": reason}
    key = audit_chain.signing_key()
    if key is not None:
        line["kid"] = key.kid
        line["mac"] = audit_chain.mac(key, _body(line))
    dest = target or path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    fd = os.open(dest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return line


def database_name(conn: Session | Connection) -> str:
    """Which results database a line is about: its name and the cluster's system identifier (set by initdb),
    so a database of the same name on another server or a re-initialised one is not mistaken for this one,
    while a database dropped and recreated on the same server is (and shows as truncated)."""
    row = conn.execute(text("SELECT current_database(), (SELECT system_identifier FROM pg_control_system())")).one()
    return f"{row[0]}@{row[1]}"


def write_current(session: Session, *, reason: str) -> dict[str, Any]:
    """Checkpoint the chain head as ``session`` sees it now."""
    head = audit_chain.chain_head(session)
    head["database"] = database_name(session)
    return write(head, reason=reason)


@dataclass
class CheckpointCheck:
    matched: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check(session: Session, walk: ChainWalk, keys: dict[str, audit_chain.ChainKey], *,
          source: Path | None = None) -> CheckpointCheck:
    """Hold the chain against every checkpoint line of this database."""
    src = source or path()
    res = CheckpointCheck()
    db = database_name(session)
    lines = src.read_text(encoding="utf-8", errors="replace").splitlines() if src.is_file() else []
    unsigned = unchecked = 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            if line.get("database") != db:
                continue
            last_id, head_hash, count = int(line["last_id"]), str(line["head_hash"]), int(line["count"])
        except (ValueError, TypeError, KeyError, AttributeError):
            res.problems.append(f"checkpoint {src.name} line {number}: not a valid checkpoint (the file was edited)")
            continue
        where = f"checkpoint {src.name} line {number} ({str(line.get('ts'))[:32]})"
        if "mac" in line:
            key = keys.get(str(line.get("kid")))
            if key is None:
                unchecked += 1
            elif audit_chain.mac(key, _body(line)) != line["mac"]:
                res.problems.append(f"{where}: its MAC does not verify (the checkpoint file was edited)")
                continue
        else:
            unsigned += 1
        if last_id == 0:
            res.matched += 1
            continue
        if last_id not in walk.hashes:
            res.problems.append(f"{where}: audit row {last_id}, the chain head then, is missing (the chain was "
                                "truncated or rows deleted)")
        elif walk.hashes[last_id] != head_hash:
            res.problems.append(f"{where}: audit row {last_id} no longer has the checkpointed hash (the chain "
                                "was rewritten up to it)")
        elif walk.count_through(last_id) != count:
            res.problems.append(f"{where}: {count} rows up to audit row {last_id} then, "
                                f"{walk.count_through(last_id)} now (rows were deleted or inserted before it)")
        else:
            res.matched += 1
    if res.matched == 0 and not res.problems:
        res.notes.append(f"no checkpoint of database {db} in {src}: truncation or a recomputed chain "
                         "cannot be detected against one")
    if unchecked:
        res.notes.append(f"{unchecked} checkpoint line(s) are signed by a key not configured here; "
                         "their MAC was not checked")
    if unsigned and keys:
        res.notes.append(f"{unsigned} checkpoint line(s) are not signed (written without {audit_chain.ENV_KEY})")
    return res
