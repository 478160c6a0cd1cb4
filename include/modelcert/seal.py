"""Seal every evidence row into the audit chain when it is written, and find rows edited since.

Why a session event: the writers (lifecycle, sign-offs, certificates) change often and by different hands; a
seal nobody has to remember to write cannot be forgotten. Every evidence row an ORM flush inserts, updates or
deletes, or an ORM-enabled ``insert``/``update``/``delete`` statement run through a Session writes, is noted;
just before the transaction commits, one ``rows_sealed`` audit event per run (``entity_id`` ``seal:run:<id>``)
or model version (``seal:mv:<id>``) is appended in that same transaction, for the rows whose content differs
from their latest seal (a re-run that writes identical evidence adds nothing). Its payload:

``{"v": 1, "columns": {table: [column, …]}, "rows": [{"t": table, "pk": "…", "sha256": "…"}, …]}``

with ``{"t", "pk", "deleted": true}`` for a deleted row. A row's digest is computed from what the database
holds after the write (so server defaults and JSONB normalisation are included), over the columns listed
(a column added by a later migration does not break older seals; it is covered from its row's next write).

Canonical form, chosen to be injective: every value is tagged with its type — ``["n"]`` NULL, ``["b", v]``,
``["i", "123"]``, ``["f", repr(x)]`` (shortest round-trip float, so 0.29 and 0.2900000001 differ),
``["s", v]``, ``["t", UTC ISO-8601 with microseconds]``, ``["o", [[key, value], …]]`` sorted by key (JSONB
objects), ``["a", […]]``; then ``json.dumps(sort_keys, separators=(",", ":"), ensure_ascii=False)`` and sha256.

A check row is covered by its stage result's seal: the stage entry carries ``checks: {check id: digest}``
and its ``sha256`` covers the stage row. That matches how checks live and die (written and replaced with
their stage, deleted by the database's ON DELETE CASCADE, which no ORM event sees) while still naming the
single check row that changed.

Not sealed: statements that bypass the Session (``engine.begin()``, ``session.connection().execute``) and
rows written inside a savepoint by a bulk INSERT statement; ``verify`` names such rows as never sealed, so
the gap fails loudly rather than silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, event, select, text
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from modelcert import audit_chain
from modelcert.audit_chain import SEAL_ACTION
from modelcert.db.models import (
    AuditEvent,
    Certificate,
    CertificationRun,
    CheckResult,
    Dossier,
    Finding,
    ModelVersion,
    Signoff,
    StageResult,
)

SEAL_ACTOR = "modelcert"
log = logging.getLogger("modelcert.seal")

#: Tables sealed on their own, in the order ``verify`` reports them. Checks ride with their stage result.
TABLES: dict[str, Table] = {m.__tablename__: m.__table__ for m in  # type: ignore[misc]
                            (ModelVersion, CertificationRun, StageResult, Signoff, Certificate, Finding, Dossier)}
CHECKS: Table = CheckResult.__table__  # type: ignore[assignment]
_MODELS = (ModelVersion, CertificationRun, StageResult, Signoff, Certificate, Finding, Dossier)

_SEALED = "modelcert.seal.sealed"          # {(table, pk): digest} sealed in this transaction
_TOUCHED = "modelcert.seal.touched"        # {table: {pk}} written in this transaction, sealed at commit
_WANT_CHECKPOINT = "modelcert.seal.checkpoint"
_HEAD = "modelcert.seal.head"             # chain head to checkpoint after commit


def canon(value: Any) -> Any:
    """Type-tagged canonical form of a stored value (see the module docstring)."""
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, float):
        return ["f", repr(value) if math.isfinite(value) else str(value)]
    if isinstance(value, Decimal):
        return ["f", repr(float(value))]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return ["t", aware.astimezone(UTC).isoformat(timespec="microseconds")]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, dict):
        return ["o", [[str(k), canon(value[k])] for k in sorted(value, key=str)]]
    if isinstance(value, (list, tuple)):
        return ["a", [canon(v) for v in value]]
    return ["s", str(value)]


def row_digest(table: str, row: Any, columns: Iterable[str]) -> str:
    """sha256 of the canonical JSON of ``row`` (a mapping) over ``columns``."""
    body = {"table": table, "row": [[c, canon(row[c])] for c in sorted(columns)]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def _columns(table: Table) -> list[str]:
    return [c.name for c in table.columns]


def _pk(table: Table) -> Any:
    [col] = list(table.primary_key.columns)
    return col


# --- writing seals ------------------------------------------------------------------------------------------


def _scope(name: str, row: Any) -> str:
    """The audit ``entity_id`` a row's seals are filed under (indexed): its run, or its model version."""
    if name == "model_versions":
        return f"seal:mv:{row['id']}"
    run = row["id"] if name == "certification_runs" else row["run_id"]
    return f"seal:run:{run}"


def _entries(conn: Any, touched: dict[str, set[str]]) -> list[tuple[str, dict[str, Any]]]:
    """Read the touched rows back from the database and digest them; a row no longer there is ``deleted``.
    Returns (scope, entry) pairs."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name, table in TABLES.items():
        pks = touched.get(name)
        if not pks:
            continue
        pk = _pk(table)
        keys = [int(p) for p in pks] if pk.type.python_type is int else list(pks)
        rows = {str(r[pk.name]): r for r in conn.execute(select(table).where(pk.in_(keys))).mappings()}
        checks: dict[str, dict[str, str]] = {}
        if name == "stage_results" and rows:
            cols = _columns(CHECKS)
            for c in conn.execute(select(CHECKS).where(CHECKS.c.stage_result_id.in_([int(k) for k in rows]))
                                  .order_by(CHECKS.c.id)).mappings():
                checks.setdefault(str(c["stage_result_id"]), {})[str(c["id"])] = row_digest("check_results", c, cols)
        for key in sorted(pks):
            row = rows.get(str(key))
            if row is None:
                out.append(("seal:deleted", {"t": name, "pk": str(key), "deleted": True}))
                continue
            entry: dict[str, Any] = {"t": name, "pk": str(key), "sha256": row_digest(name, row, _columns(table))}
            if name == "stage_results":
                entry["checks"] = checks.get(str(key), {})
            out.append((_scope(name, row), entry))
    return out


def _mark(entry: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in entry.items() if k not in ("t", "pk")}, sort_keys=True)


def _sealed_before(conn: Any, scopes: set[str]) -> dict[tuple[str, str], str]:
    """The latest sealed mark of every row filed under ``scopes`` (one indexed query)."""
    found: dict[tuple[str, str], str] = {}
    if not scopes:
        return found
    ev = AuditEvent.__table__
    for payload in conn.execute(select(ev.c.payload).where(ev.c.action == SEAL_ACTION, ev.c.entity_id.in_(scopes))
                                .order_by(ev.c.id)).scalars():
        for entry in (payload or {}).get("rows") or []:
            if isinstance(entry, dict):
                found[(str(entry.get("t")), str(entry.get("pk")))] = _mark(entry)
    return found


def seal(session: Session, touched: dict[str, set[str]]) -> list[int]:
    """Append a ``rows_sealed`` event per scope (run or model version) for the touched rows whose content
    differs from their latest seal — an unchanged row is not sealed again, so a task re-run that writes the
    same evidence adds no audit event. Returns the new audit ids."""
    conn = session.connection()
    done: dict[tuple[str, str], str] = session.info.setdefault(_SEALED, {})
    entries = [(scope, e) for scope, e in _entries(conn, touched) if done.get((e["t"], e["pk"])) != _mark(e)]
    earlier = _sealed_before(conn, {scope for scope, e in entries if not e.get("deleted")})
    by_scope: dict[str, list[dict[str, Any]]] = {}
    for scope, entry in entries:
        key = (entry["t"], entry["pk"])
        done[key] = _mark(entry)
        if earlier.get(key) != done[key]:
            by_scope.setdefault(scope, []).append(entry)
    ids = []
    for scope, fresh in sorted(by_scope.items()):
        tables = sorted({e["t"] for e in fresh})
        columns = {t: _columns(TABLES[t]) for t in tables}
        if "stage_results" in columns:
            columns["check_results"] = _columns(CHECKS)
        if "certificates" in tables:
            session.info[_WANT_CHECKPOINT] = True
        ids.append(audit_chain.append_core(conn, actor=SEAL_ACTOR, action=SEAL_ACTION, entity_type="evidence",
                                     entity_id=scope[:64], payload={"v": 1, "columns": columns, "rows": fresh}))
    return ids


def _touch(touched: dict[str, set[str]], table: str, pk: Any) -> None:
    if pk is not None:
        touched.setdefault(table, set()).add(str(pk))


def _orm_touched(session: Session) -> dict[str, set[str]]:
    """Evidence rows this flush inserted, changed or deleted (checks count as their stage result)."""
    from sqlalchemy import inspect

    touched: dict[str, set[str]] = {}
    for obj in [*session.new, *session.dirty, *session.deleted]:
        if isinstance(obj, CheckResult):
            parent = obj.__dict__.get("stage_result_id")
            if parent is None:
                ident = inspect(obj).identity
                if ident:
                    parent = session.connection().execute(
                        select(CHECKS.c.stage_result_id).where(CHECKS.c.id == ident[0])).scalar()
            _touch(touched, "stage_results", parent)
        elif isinstance(obj, _MODELS):
            # A row inserted by this flush has its key in __dict__ but no identity until the flush ends.
            ident = inspect(obj).identity
            _touch(touched, obj.__tablename__, ident[0] if ident else obj.__dict__.get("id"))
    return touched


def _merge(session: Session, touched: dict[str, set[str]]) -> None:
    pending: dict[str, set[str]] = session.info.setdefault(_TOUCHED, {})
    for table, pks in touched.items():
        pending.setdefault(table, set()).update(pks)


def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    _merge(session, _orm_touched(session))


def _dml_target(state: ORMExecuteState) -> Table | None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return None
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    return table if name in TABLES or name == CHECKS.name else None  # type: ignore[return-value]


def _do_orm_execute(state: ORMExecuteState) -> Any:
    """Note rows written by an insert/update/delete statement on an evidence table (no flush sees those)."""
    table = _dml_target(state)
    if table is None:
        return None
    conn = state.session.connection()
    is_check = table.name == CHECKS.name
    key_col = CHECKS.c.stage_result_id if is_check else _pk(TABLES[table.name])
    before: list[Any] = []
    if not state.is_insert:
        where = getattr(state.statement, "whereclause", None)
        query = select(table.c[key_col.name])
        before = list(conn.execute(query.where(where) if where is not None else query).scalars())
    result = state.invoke_statement()
    if state.is_insert:
        # Rows this transaction created or changed carry its transaction id in xmin.
        before = list(conn.execute(select(table.c[key_col.name]).where(
            text("xmin = pg_current_xact_id()::xid"))).scalars())
    if before:
        _merge(state.session, {"stage_results" if is_check else table.name: {str(k) for k in before}})
    return result


def _before_commit(session: Session) -> None:
    """Seal everything the transaction wrote, once, just before it commits (a savepoint's release waits for
    the outer commit); note the chain head to checkpoint when a certificate was written."""
    if session.in_nested_transaction():
        return
    pending = any(isinstance(o, (*_MODELS, CheckResult)) for o in (*session.new, *session.dirty, *session.deleted))
    if not (pending or session.info.get(_TOUCHED)):
        return  # not a modelcert write (e.g. Airflow's own sessions in the same process): leave it alone
    session.flush()
    touched = session.info.pop(_TOUCHED, None)
    if touched:
        seal(session, touched)
    if session.info.get(_WANT_CHECKPOINT):
        from modelcert import checkpoints

        conn = session.connection()
        head = audit_chain.chain_head(conn)
        head["database"] = checkpoints.database_name(conn)
        session.info[_HEAD] = head


# --- checkpoints at certificate issue -----------------------------------------------------------------------


def _after_commit(session: Session) -> None:
    head = session.info.pop(_HEAD, None)
    if head is None:
        return
    from modelcert import checkpoints

    try:
        checkpoints.write(head, reason="certificate")
    except (OSError, audit_chain.AuditKeyError) as exc:
        # The transaction has committed; failing now would only make a caller retry what is done.
        log.error("audit checkpoint not written to %s: %s", checkpoints.path(), exc)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        for key in (_SEALED, _TOUCHED, _WANT_CHECKPOINT, _HEAD):
            session.info.pop(key, None)


#: The Session events this module registers (name, listener).
HOOKS = (("after_flush", _after_flush), ("do_orm_execute", _do_orm_execute), ("before_commit", _before_commit),
         ("after_commit", _after_commit), ("after_transaction_end", _after_transaction_end))


def install() -> None:
    """Register the events on every Session (idempotent). Called when this module is imported."""
    for name, fn in HOOKS:
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


install()


# --- verifying ----------------------------------------------------------------------------------------------


@dataclass
class RowCheck:
    checked: int = 0
    problems: list[str] = field(default_factory=list)


def _clip(value: Any, limit: int = 40) -> str:
    s = str(value)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _short(run_id: Any) -> str:
    return str(run_id)[:8] + "…" if run_id else "?"


def describe(table: str, row: Any, stage_names: dict[int, tuple[str, str]] | None = None) -> str:
    """``table id N (what it is)`` from the row as stored, bounded."""
    pk = row["id"]
    if table == "model_versions":
        what = f"{_clip(row['name'])} {_clip(row['version'], 20)}"
    elif table == "certification_runs":
        what = f"status {_clip(row['status'], 20)}"
    elif table == "stage_results":
        what = f"run {_short(row['run_id'])}, {_clip(row['stage'], 30)}"
    elif table == "check_results":
        run, stage = (stage_names or {}).get(row["stage_result_id"], ("", "?"))
        subject = f"[{_clip(row['subject'])}]" if row["subject"] else ""
        what = f"run {_short(run)}, {stage} {_clip(row['name'])}{subject}"
    elif table == "signoffs":
        what = f"run {_short(row['run_id'])}, {_clip(row['approver'])} {_clip(row['decision'], 10)}"
    elif table == "certificates":
        what = f"run {_short(row['run_id'])}, status {_clip(row['status'], 20)}"
    elif table == "findings":
        what = f"run {_short(row['run_id'])}, {_clip(row['key'])} {_clip(row['status'], 10)}"
    else:
        what = ""
    return f"{table} id {_clip(pk, 40)} ({what})"


def latest_seals(seals: list[tuple[int, dict[str, Any]]]) -> dict[tuple[str, str], tuple[int, dict[str, Any],
                                                                                             dict[str, list[str]]]]:
    """The last seal of each row: (audit event id, entry, sealed columns per table)."""
    latest: dict[tuple[str, str], tuple[int, dict[str, Any], dict[str, list[str]]]] = {}
    for event_id, payload in seals:
        columns = payload.get("columns") if isinstance(payload.get("columns"), dict) else {}
        for entry in payload.get("rows") or []:
            if isinstance(entry, dict) and "t" in entry and "pk" in entry:
                latest[(str(entry["t"]), str(entry["pk"]))] = (event_id, entry, columns)
    return latest


def verify_rows(session: Session, seals: list[tuple[int, dict[str, Any]]]) -> RowCheck:
    """Recompute every evidence row (one pass per table) and compare it with its latest seal.

    Names rows whose content changed since sealed, rows present but never sealed (written around the
    Session, e.g. inserted with SQL), and sealed rows that are gone (deleted)."""
    latest = latest_seals(seals)
    res = RowCheck()
    seen: set[tuple[str, str]] = set()
    stage_names: dict[int, tuple[str, str]] = {}
    stage_checks: dict[str, dict[str, Any]] = {}
    for name, table in TABLES.items():
        for row in session.execute(select(table).order_by(_pk(table))).mappings():
            key = (name, str(row["id"]))
            seen.add(key)
            res.checked += 1
            if name == "stage_results":
                stage_names[row["id"]] = (row["run_id"], row["stage"])
            sealed = latest.get(key)
            if sealed is None:
                res.problems.append(f"{describe(name, row)}: present but never sealed (written around modelcert, "
                                    "e.g. inserted with SQL)")
                continue
            event_id, entry, columns = sealed
            if entry.get("deleted"):
                res.problems.append(f"{describe(name, row)}: present although sealed as deleted at audit event "
                                    f"{event_id}")
                continue
            cols = columns.get(name) or _columns(table)
            if any(c not in row for c in cols) or row_digest(name, row, cols) != entry.get("sha256"):
                res.problems.append(f"{describe(name, row)}: content changed since sealed at audit event {event_id}")
            if name == "stage_results":
                stage_checks[str(row["id"])] = {"event": event_id, "checks": entry.get("checks") or {},
                                                "columns": columns.get("check_results") or _columns(CHECKS)}
    seen_checks: set[tuple[str, str]] = set()
    for row in session.execute(select(CHECKS).order_by(CHECKS.c.stage_result_id, CHECKS.c.id)).mappings():
        res.checked += 1
        parent = stage_checks.get(str(row["stage_result_id"]))
        seen_checks.add((str(row["stage_result_id"]), str(row["id"])))
        label = describe("check_results", row, stage_names)
        if parent is None:
            if ("stage_results", str(row["stage_result_id"])) in latest:
                continue  # its stage result is already named above (changed, or sealed as deleted)
            res.problems.append(f"{label}: present but never sealed (its stage result was never sealed)")
            continue
        digest = parent["checks"].get(str(row["id"]))
        cols = parent["columns"]
        if digest is None:
            res.problems.append(f"{label}: present but never sealed (not among the checks sealed with its stage "
                                f"result at audit event {parent['event']})")
        elif any(c not in row for c in cols) or row_digest("check_results", row, cols) != digest:
            res.problems.append(f"{label}: content changed since sealed at audit event {parent['event']}")
    for stage_id, parent in stage_checks.items():
        for check_id in parent["checks"]:
            if (stage_id, str(check_id)) not in seen_checks:
                res.problems.append(f"check_results id {_clip(check_id)} (stage result {stage_id}): sealed at "
                                    f"audit event {parent['event']} but missing (deleted)")
    for (name, pk), (event_id, entry, _) in latest.items():
        if (name, pk) not in seen and not entry.get("deleted") and name in TABLES:
            res.problems.append(f"{name} id {_clip(pk)}: sealed at audit event {event_id} but missing (deleted)")
    return res
