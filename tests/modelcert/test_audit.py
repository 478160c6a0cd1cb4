"""The audit log is append-only in the database and its hash chain exposes tampering."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from modelcert import audit
from modelcert.db.session import reader, transaction
from tests.lifecycle import run_all, superuser

pytestmark = pytest.mark.store


@pytest.fixture
def chain(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> Any:
    run_all(engine, spec_path)
    with reader(engine) as s:
        res = audit.verify(s)
    assert res.ok and res.rows >= 8
    return engine


def _verify(engine: Any) -> audit.VerifyResult:
    with reader(engine) as s:
        return audit.verify(s)


@pytest.mark.parametrize("sql", ["UPDATE audit_events SET actor = 'mallory' WHERE id = 2",
                                 "DELETE FROM audit_events WHERE id = 2",
                                 "TRUNCATE audit_events"])
def test_database_refuses_update_delete_truncate(chain: Any, sql: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"), transaction(chain) as s:
        s.execute(text(sql))
    assert _verify(chain).ok


def test_edited_row_is_found(chain: Any) -> None:
    superuser(chain, "UPDATE audit_events SET payload = '{\"stage\": \"forged\"}' WHERE id = 3")
    res = _verify(chain)
    assert not res.ok and res.first_bad_id == 3 and "edited" in res.problem


def test_deleted_row_is_found(chain: Any) -> None:
    superuser(chain, "DELETE FROM audit_events WHERE id = 4")
    res = _verify(chain)
    assert not res.ok and res.first_bad_id == 5 and "prev_hash" in res.problem


def test_reordered_rows_are_found(chain: Any) -> None:
    superuser(chain,
               "UPDATE audit_events SET id = -1 WHERE id = 5",
               "UPDATE audit_events SET id = 5 WHERE id = 6",
               "UPDATE audit_events SET id = 6 WHERE id = -1")
    res = _verify(chain)
    assert not res.ok and res.first_bad_id == 5


def test_cli_audit_verify_reports_first_bad_row(chain: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main

    url = chain.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "audit", "verify"]) == 0
    superuser(chain, "UPDATE audit_events SET actor = 'mallory' WHERE id = 2")
    assert main(["--database-url", url, "audit", "verify"]) != 0
    assert "first bad row 2" in capsys.readouterr().out


# --- evidence seals, the key and checkpoints (issue 8 item 5) ----------------------------------------------

KEY = "k" * 32


@pytest.fixture(autouse=True)
def _anchors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own checkpoint file and starts without a key."""
    path = tmp_path / "checkpoints.jsonl"
    monkeypatch.setenv("MODELCERT_AUDIT_CHECKPOINTS", str(path))
    monkeypatch.delenv("MODELCERT_AUDIT_KEY", raising=False)
    monkeypatch.delenv("MODELCERT_AUDIT_OLD_KEYS", raising=False)
    return path


def _certify(engine: Any, spec_path: Path) -> dict[str, Any]:
    from modelcert import pipeline
    from modelcert.governance import Identity, record_decision
    from tests.lifecycle import ROLES

    run_id = run_all(engine, spec_path)
    with reader(engine) as s:
        digest = s.execute(text("SELECT evidence_digest FROM certification_runs WHERE id = :r"),
                           {"r": run_id}).scalar_one()
    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        record_decision(engine, run_id, Identity(who, "t"), role=role, decision="approve", evidence_digest=digest,
                        roles=ROLES)
    return pipeline.promote(engine, run_id)


@pytest.fixture
def certified(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> dict[str, Any]:
    return _certify(engine, spec_path)


def _one(engine: Any, sql: str) -> Any:
    with reader(engine) as s:
        return s.execute(text(sql)).scalar_one()


def test_clean_certification_is_sealed_checkpointed_and_intact(engine: Any, certified: dict[str, Any],
                                                               _anchors: Path) -> None:
    res = _verify(engine)
    assert res.ok, res.problems
    evidence = sum(_one(engine, f"SELECT count(*) FROM {t}") for t in
                   ("model_versions", "certification_runs", "stage_results", "check_results", "signoffs",
                    "certificates", "findings"))
    assert res.sealed_rows == evidence and res.checkpoints == 1
    assert any("no MODELCERT_AUDIT_KEY" in n for n in res.notes)
    [line] = [json.loads(x) for x in _anchors.read_text().splitlines()]
    assert line["reason"] == "certificate" and line["count"] == res.rows
    head = _one(engine, "SELECT payload -> 'chain_head' FROM audit_events WHERE action = 'certificate_issued'")
    assert _one(engine, f"SELECT hash FROM audit_events WHERE id = {head['last_id']}") == head["head_hash"]


EDITS = {
    "check value": (("UPDATE check_results SET value = 0.95 WHERE id = (SELECT min(id) FROM check_results "
                    "WHERE name = 'score')"), "check_results id {check}", "score[all]"),
    "check verdict": (("UPDATE check_results SET passed = NOT passed WHERE id = (SELECT min(id) FROM check_results "
                      "WHERE name = 'score')"), "check_results id {check}", "content changed since sealed"),
    "check three-way verdict": (("UPDATE check_results SET verdict = 'inconclusive', passed = NULL WHERE id = "
                                 "(SELECT min(id) FROM check_results WHERE name = 'score')"),
                                "check_results id {check}", "content changed since sealed"),
    "check threshold": (("UPDATE check_results SET threshold = '{\"min\": 0.01}' WHERE id = (SELECT min(id) FROM "
                        "check_results WHERE name = 'score')"), "check_results id {check}", "content changed"),
    "sign-off": ("UPDATE signoffs SET approver = 'mallory' WHERE approver = 'bob'", "signoffs id", "mallory"),
    "certificate status": ("UPDATE certificates SET status = 'revoked'", "certificates id {cert}", "revoked"),
    "certificate validity": ("UPDATE certificates SET valid_until = valid_until + interval '10 years'",
                             "certificates id {cert}", "content changed"),
    "run status": ("UPDATE certification_runs SET status = 'rejected'", "certification_runs id {run}", "rejected"),
    "run spec": ("UPDATE certification_runs SET spec = jsonb_set(spec, '{model,owner}', '\"eve\"')",
                 "certification_runs id {run}", "content changed"),
    "stage result": ("UPDATE stage_results SET status = 'failed' WHERE stage = 'fairness'", "stage_results id",
                     "fairness"),
    "model version": ("UPDATE model_versions SET risk_tier = 'low'", "model_versions id", "synthetic"),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_evidence_edited_in_sql_is_named(engine: Any, certified: dict[str, Any], edit: str) -> None:
    sql, where, detail = EDITS[edit]
    check = _one(engine, "SELECT min(id) FROM check_results WHERE name = 'score'")
    where = where.format(check=check, cert=certified["certificate_id"], run=certified["run_id"])
    superuser(engine, sql)
    res = _verify(engine)
    assert not res.ok
    [named] = [p for p in res.problems if where in p]
    assert detail in named and ("content changed since sealed at audit event" in named), res.problems
    assert res.first_bad_id is None  # the chain itself is intact: only the evidence changed


def test_forged_signoff_row_and_deleted_check_are_named(engine: Any, certified: dict[str, Any]) -> None:
    run = certified["run_id"]
    digest = _one(engine, f"SELECT evidence_digest FROM certification_runs WHERE id = '{run}'")
    superuser(engine,
               "INSERT INTO signoffs (run_id, approver, role, decision, evidence_digest, comment, authenticated_via,"
               f" created_at) VALUES ('{run}', 'mallory', 'risk_officer', 'approve', '{digest}', '', 'cli', now())",
               "DELETE FROM check_results WHERE id = (SELECT max(id) FROM check_results)")
    problems = _verify(engine).problems
    assert any(p.startswith("signoffs id") and "mallory" in p and "never sealed" in p for p in problems), problems
    assert any(p.startswith("check_results id") and "missing (deleted)" in p for p in problems), problems


def test_writes_through_statements_are_sealed_too(engine: Any, certified: dict[str, Any]) -> None:
    """An ORM-enabled UPDATE statement (no flush sees it) is sealed by the execute hook."""
    from sqlalchemy import update

    from modelcert.db.models import Certificate

    with transaction(engine) as s:
        s.execute(update(Certificate).where(Certificate.id == certified["certificate_id"])
                  .values(status_reason="checked by statement"))
    assert _verify(engine).ok, _verify(engine).problems


def _forge(engine: Any, n: int) -> None:
    """Append ``n`` correctly chained rows the way someone with only database credentials can (plain sha256)."""
    from datetime import datetime

    prev = _one(engine, "SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1")
    rows = []
    for i in range(n):
        ts = datetime.now(UTC)
        body = {"role": "risk_officer", "i": i}
        h = audit.event_hash(ts=ts, actor="mallory", action="signoff_approve", entity_type="run", entity_id="x",
                             payload=body, prev_hash=prev)
        rows.append(f"INSERT INTO audit_events (ts, actor, action, entity_type, entity_id, payload, prev_hash, hash) "
                    f"VALUES ('{ts.isoformat()}', 'mallory', 'signoff_approve', 'run', 'x', '{json.dumps(body)}', "
                    f"'{prev}', '{h}')")
        prev = h
    superuser(engine, *rows)


def test_forged_chained_rows_are_found_with_the_key(engine: Any, spec_path: Path, verdicts: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch, _anchors: Path) -> None:
    monkeypatch.setenv("MODELCERT_AUDIT_KEY", KEY)
    _certify(engine, spec_path)
    assert _verify(engine).ok and _verify(engine).mode.startswith("hmac-sha256")
    _anchors.unlink()  # the key alone must find them
    _forge(engine, 2)
    res = _verify(engine)
    assert not res.ok and "not signed with the audit key" in res.problem
    assert res.first_bad_id == _one(engine, "SELECT max(id) - 1 FROM audit_events")
    monkeypatch.delenv("MODELCERT_AUDIT_KEY")
    weak = _verify(engine)  # without the key and without a checkpoint, the forgery passes; the output says why
    assert weak.ok and any("without the key only their linkage" in n for n in weak.notes)


def test_deleting_the_last_rows_is_found_by_the_checkpoint(engine: Any, certified: dict[str, Any]) -> None:
    last = _one(engine, "SELECT max(id) FROM audit_events")
    superuser(engine, f"DELETE FROM audit_events WHERE id > {last - 3}")
    res = _verify(engine)
    assert not res.ok
    assert any(f"audit row {last}, the chain head then, is missing" in p for p in res.problems), res.problems


def _rechain(engine: Any, edit_id: int) -> None:
    """Edit one row, then recompute every later hash (plain sha256, dropping any key mark): a rewritten chain."""
    su = create_engine(engine.url)
    try:
        with su.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            rows = conn.execute(text("SELECT * FROM audit_events ORDER BY id")).mappings().all()
            prev = audit.GENESIS
            for r in rows:
                payload = {k: v for k, v in r["payload"].items() if k != audit.MARK}
                if r["id"] == edit_id:
                    payload["comment"] = "approved after review"
                if r["id"] >= edit_id:
                    h = audit.event_hash(ts=r["ts"], actor=r["actor"], action=r["action"],
                                         entity_type=r["entity_type"], entity_id=r["entity_id"],
                                         payload=audit.canonical(payload), prev_hash=prev)
                    conn.execute(text("UPDATE audit_events SET payload = :p, prev_hash = :prev, hash = :h "
                                      "WHERE id = :id"), {"p": json.dumps(payload), "prev": prev, "h": h,
                                                          "id": r["id"]})
                    prev = h
                else:
                    prev = r["hash"]
    finally:
        su.dispose()


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
def test_recomputed_chain_is_found(engine: Any, spec_path: Path, verdicts: dict[str, str], keyed: bool,
                                   monkeypatch: pytest.MonkeyPatch, _anchors: Path) -> None:
    if keyed:
        monkeypatch.setenv("MODELCERT_AUDIT_KEY", KEY)
    _certify(engine, spec_path)
    edit = _one(engine, "SELECT min(id) FROM audit_events WHERE action = 'signoff_approve'")
    _rechain(engine, edit)
    res = _verify(engine)
    assert not res.ok
    assert any("no longer has the checkpointed hash" in p for p in res.problems), res.problems
    if keyed:
        assert res.first_bad_id == edit and "not signed with the audit key" in res.problem
        _anchors.unlink()
        assert not _verify(engine).ok  # the key alone finds it too
    else:
        _anchors.unlink()
        plain = _verify(engine)  # no key, no checkpoint: a recomputed chain cannot be told apart; it says so
        assert plain.ok and any("only checkpoints outside the database detect that" in n for n in plain.notes)


def test_checkpoint_file_edits_are_found_with_the_key(engine: Any, spec_path: Path, verdicts: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch, _anchors: Path) -> None:
    monkeypatch.setenv("MODELCERT_AUDIT_KEY", KEY)
    _certify(engine, spec_path)
    line = json.loads(_anchors.read_text())
    _anchors.write_text(json.dumps({**line, "count": line["count"] - 1}) + "\n")
    res = _verify(engine)
    assert not res.ok and "MAC does not verify" in res.problem


def test_short_key_is_refused_with_one_line() -> None:
    import os

    os.environ["MODELCERT_AUDIT_KEY"] = "short"
    try:
        with pytest.raises(audit.AuditKeyError, match="MODELCERT_AUDIT_KEY: a key must be at least 16"):
            audit.signing_key()
    finally:
        del os.environ["MODELCERT_AUDIT_KEY"]


def test_cli_verify_checkpoint_and_named_row(engine: Any, certified: dict[str, Any], _anchors: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main

    url = engine.url.render_as_string(hide_password=False)
    assert main(["audit", "verify", "--checkpoint", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "audit log intact" in out and "sha256 (no key)" in out and "checkpoint written" in out
    assert [json.loads(x)["reason"] for x in _anchors.read_text().splitlines()] == ["certificate", "verify"]
    superuser(engine, "UPDATE certificates SET status = 'revoked'")
    assert main(["audit", "verify", "--checkpoint", "--database-url", url]) != 0
    out = capsys.readouterr().out
    assert "TAMPERED" in out and f"certificates id {certified['certificate_id']}" in out
    assert len(_anchors.read_text().splitlines()) == 2  # no checkpoint vouches for a tampered chain


def test_checkpoints_of_another_database_do_not_apply(engine: Any, certified: dict[str, Any], _anchors: Path) -> None:
    """Lines name their database (name @ cluster id): the same name on another cluster is someone else's chain."""
    from modelcert import checkpoints

    with reader(engine) as s:
        mine = checkpoints.database_name(s)
    name = mine.split("@")[0]
    checkpoints.write({"database": f"{name}@1", "last_id": 999, "head_hash": "f" * 64, "count": 999},
                      reason="verify")
    assert _verify(engine).ok
    checkpoints.write({"database": mine, "last_id": 999, "head_hash": "f" * 64, "count": 999}, reason="verify")
    assert "audit row 999, the chain head then, is missing" in _verify(engine).problem
