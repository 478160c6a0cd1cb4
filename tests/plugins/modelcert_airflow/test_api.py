"""The approvals API: authenticated by the caller's Airflow token, every refusal with its status and message,
all rules applied by governance.record_decision (the API only maps its codes to HTTP statuses)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from modelcert import pipeline
from modelcert.db.models import AuditEvent, Signoff
from modelcert.db.session import reader
from tests.lifecycle import run_all
from tests.plugins.modelcert_airflow.conftest import JWT_SECRET, digest_of

pytestmark = pytest.mark.store
API = "/modelcert/api"


def approve(as_user: Callable[..., Any], user: str, run_id: str, role: str, digest: str, comment: str = "") -> Any:
    return as_user(user).post(f"{API}/runs/{run_id}/approve",
                              json={"role": role, "evidence_digest": digest, "comment": comment})


def refused(resp: Any, status: int, code: str, words: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code, body
    assert words in body["detail"], body


# ---------------------------------------------------------------------------------------------- authentication
def test_me_names_the_token_user_and_their_certification_roles(as_user: Callable[..., Any]) -> None:
    r = as_user("bob").get(f"{API}/me")
    assert r.status_code == 200
    assert r.json() == {"user": "bob", "certification_roles": ["model_validator"], "authenticated_via": "bearer"}
    assert as_user("carol").get(f"{API}/me").json()["certification_roles"] == []


def test_no_token_is_401(client: Any, waiting: str) -> None:
    for method, url in (("GET", f"{API}/runs"), ("GET", f"{API}/runs/{waiting}"), ("GET", f"{API}/certificates"),
                        ("GET", f"{API}/me"), ("POST", f"{API}/runs/{waiting}/approve")):
        r = client.request(method, url, json={"role": "model_validator", "evidence_digest": "x"})
        refused(r, 401, "unauthenticated", "POST /auth/token")
        assert r.headers["www-authenticate"] == "Bearer"


def test_bad_tokens_are_401(client: Any, token: Callable[..., str], waiting: str) -> None:
    good = jwt.decode(token("bob"), options={"verify_signature": False})
    forged = jwt.encode({**good, "sub": "dave"}, "not-the-airflow-secret-" + "y" * 48, algorithm="HS512")
    expired = jwt.encode({**good, "exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200,
                          "nbf": int(time.time()) - 7200}, JWT_SECRET, algorithm="HS512")
    other_audience = jwt.encode({**good, "aud": "someone-else"}, JWT_SECRET, algorithm="HS512")
    cases = {"garbage": ("Bearer not-a-jwt", "does not accept"), "forged": (f"Bearer {forged}", "does not accept"),
             "expired": (f"Bearer {expired}", "expired"), "audience": (f"Bearer {other_audience}", "does not accept"),
             "scheme": (f"Basic {token('bob')}", "must be 'Bearer")}
    for name, (header, words) in cases.items():
        r = client.get(f"{API}/runs/{waiting}", headers={"Authorization": header})
        assert r.status_code == 401, (name, r.text)
        assert words in r.json()["detail"], (name, r.json())


def test_a_revoked_token_is_401(client: Any, token: Callable[..., str]) -> None:
    from modelcert_airflow.auth import auth_manager

    tok = token("bob")
    assert client.get(f"{API}/me", headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    auth_manager().revoke_token(tok)  # what Airflow's logout does
    r = client.get(f"{API}/me", headers={"Authorization": f"Bearer {tok}"})
    refused(r, 401, "unauthenticated", "revoked")


# ---------------------------------------------------------------------------------------------- happy path
def test_two_approvals_reach_quorum(as_user: Callable[..., Any], engine: Any, waiting: str) -> None:
    digest = as_user("bob").get(f"{API}/runs/{waiting}").json()["evidence_digest"]
    r1 = approve(as_user, "bob", waiting, "model_validator", digest, "performance and fairness reviewed")
    assert r1.status_code == 201, r1.text
    assert r1.json()["approver"] == "bob" and r1.json()["quorum"]["state"] == "waiting"
    assert r1.json()["quorum"]["missing"] == {"risk_officer": 1}
    r2 = approve(as_user, "dave", waiting, "risk_officer", digest)
    assert r2.status_code == 201, r2.text
    assert r2.json()["quorum"]["state"] == "approved"
    assert pipeline.signoff_state(engine, waiting).state == "approved"
    with reader(engine) as s:
        rows = list(s.execute(select(Signoff).where(Signoff.run_id == waiting).order_by(Signoff.id)).scalars())
        actors = [e.actor for e in s.execute(select(AuditEvent).where(AuditEvent.action == "signoff_approve")).scalars()]
    assert [(x.approver, x.role, x.authenticated_via) for x in rows] == [
        ("bob", "model_validator", "api:airflow-token"), ("dave", "risk_officer", "api:airflow-token")]
    assert actors == ["bob", "dave"]
    cert = pipeline.promote(engine, waiting)
    listed = as_user("carol").get(f"{API}/certificates").json()
    assert [c["certificate_id"] for c in listed] == [cert["certificate_id"]]


def test_run_view_says_what_you_may_sign(as_user: Callable[..., Any], waiting: str) -> None:
    bob = as_user("bob").get(f"{API}/runs/{waiting}").json()
    assert bob["you"]["allowed_roles"] == ["model_validator"]
    assert [s["stage"] for s in bob["stages"]] and bob["quorum"]["missing"] == {"model_validator": 1, "risk_officer": 1}
    carol = as_user("carol").get(f"{API}/runs/{waiting}").json()
    assert carol["you"]["allowed_roles"] == []
    runs = as_user("carol").get(f"{API}/runs").json()
    assert [r["run_id"] for r in runs] == [waiting]


# ---------------------------------------------------------------------------------------------- refusals
def test_role_not_held_is_403(as_user: Callable[..., Any], engine: Any, waiting: str) -> None:
    refused(approve(as_user, "bob", waiting, "risk_officer", digest_of(engine, waiting)),
            403, "forbidden", "does not hold the role 'risk_officer'")
    refused(approve(as_user, "carol", waiting, "model_validator", digest_of(engine, waiting)),
            403, "forbidden", "carol does not hold the role")


def test_four_eyes_is_403(as_user: Callable[..., Any], engine: Any, waiting: str, roles_file: Path) -> None:
    roles_file.write_text("roles:\n  model_validator: [alice, bob]\n  risk_officer: [dave]\n")
    refused(approve(as_user, "alice", waiting, "model_validator", digest_of(engine, waiting)),
            403, "four_eyes", "four-eyes rule: alice submitted or triggered")


def test_duplicate_is_409(as_user: Callable[..., Any], engine: Any, waiting: str) -> None:
    digest = digest_of(engine, waiting)
    assert approve(as_user, "bob", waiting, "model_validator", digest).status_code == 201
    refused(approve(as_user, "bob", waiting, "model_validator", digest), 409, "duplicate", "one person counts once")


def test_not_awaiting_is_409(as_user: Callable[..., Any], engine: Any, spec_path: Path,
                             verdicts: dict[str, str]) -> None:
    verdicts["fairness"] = "failed"
    rejected = run_all(engine, spec_path, key="rejected/1")
    refused(approve(as_user, "bob", rejected, "model_validator", digest_of(engine, rejected)),
            409, "not_awaiting", "is rejected, not awaiting sign-off")


def test_other_evidence_is_409(as_user: Callable[..., Any], waiting: str) -> None:
    refused(approve(as_user, "bob", waiting, "model_validator", "f" * 64), 409, "evidence_mismatch",
            "changed since you reviewed it")


def test_role_not_required_is_422(as_user: Callable[..., Any], engine: Any, waiting: str) -> None:
    refused(approve(as_user, "erin", waiting, "legal", digest_of(engine, waiting)),
            422, "role_not_required", "role 'legal' is not required")


def test_decline_without_reason_is_422_and_with_one_ends_the_run(as_user: Callable[..., Any], engine: Any,
                                                                  waiting: str) -> None:
    url = f"{API}/runs/{waiting}/decline"
    body = {"role": "risk_officer", "evidence_digest": digest_of(engine, waiting)}
    refused(as_user("dave").post(url, json={**body, "reason": "   "}), 422, "invalid", "needs a reason")
    r = as_user("dave").post(url, json={**body, "reason": "calibration not convincing"})
    assert r.status_code == 201 and r.json()["run_status"] == "declined"
    assert r.json()["quorum"]["state"] == "declined"


def test_malformed_body_is_422(as_user: Callable[..., Any], waiting: str) -> None:
    r = as_user("bob").post(f"{API}/runs/{waiting}/approve", json={"role": "model_validator"})
    refused(r, 422, "invalid", "evidence_digest")
    r = as_user("bob").post(f"{API}/runs/{waiting}/approve", json={"role": "model_validator", "evidence_digest": ""})
    refused(r, 422, "invalid", "evidence_digest")


def test_a_decision_without_the_digest_seen_is_422_and_the_server_never_fills_it_in(
        as_user: Callable[..., Any], engine: Any, waiting: str) -> None:
    for decision, extra in (("approve", {"comment": "ok"}), ("decline", {"reason": "no"})):
        r = as_user("dave").post(f"{API}/runs/{waiting}/{decision}", json={"role": "risk_officer", **extra})
        refused(r, 422, "invalid", "evidence_digest: Field required")
        r = as_user("dave").post(f"{API}/runs/{waiting}/{decision}",
                                 json={"role": "risk_officer", "evidence_digest": "not-a-digest", **extra})
        refused(r, 422, "invalid", "evidence_digest: String should match pattern '^[0-9a-f]{64}$'")
    with reader(engine) as s:
        assert s.execute(select(Signoff).where(Signoff.run_id == waiting)).first() is None
    assert pipeline.signoff_state(engine, waiting).state == "waiting"


# ---------------------------------------------------------------------------------------------- the review
def test_the_run_json_carries_the_approval_summary_with_the_spec_diff(as_user: Callable[..., Any],
                                                                     reviewed: dict[str, str]) -> None:
    review = as_user("bob").get(f"{API}/runs/{reviewed['waiting']}").json()["review"]
    assert review["baseline"]["run_id"] == reviewed["certified"] and review["baseline"]["version"] == "1"
    diff = review["spec_diff"]
    by_check = {t["check"]: t for t in diff["thresholds"]}
    di = by_check["checks.fairness.disparate_impact"]
    assert (di["change"], di["old"]["min"], di["new"]["min"]) == ("loosened", 0.9, 0.8)
    assert (di["old_text"], di["new_text"]) == ("≥ 0.9 and ≤ 1.25", "≥ 0.8 and ≤ 1.25")
    assert by_check["checks.fairness.average_odds_difference"]["change"] == "added"
    assert diff["loosened"] == ["checks.fairness.disparate_impact"]
    assert diff["data"] == [] and diff["model"] is None  # same bytes judged; a predictions audit has no model
    assert {"field": "model.version", "old": "1", "new": "2"} in diff["other"]
    assert [(w["check"], w["subject"], w["value"]) for w in review["warnings"]] == [
        ("fairness.average_odds_difference", "sex", 0.31)]
    assert "checks.fairness.average_odds_difference" in [w["check"] for w in review["waived"]]
    first = as_user("bob").get(f"{API}/runs/{reviewed['certified']}").json()["review"]
    assert first["baseline"] is None and first["spec_diff"] is None  # nothing certified before it


def test_the_summary_names_the_policy_the_run_was_judged_under(as_user: Callable[..., Any], engine: Any,
                                                               waiting: str) -> None:
    from sqlalchemy import update

    from modelcert.db.models import CertificationRun
    from modelcert.db.session import transaction

    def set_policy(policy: dict[str, str] | None) -> dict[str, Any]:
        with transaction(engine) as s:
            run = s.get(CertificationRun, waiting)
            evidence = {k: v for k, v in run.evidence.items() if k != "policy"}
            if policy is not None:
                evidence["policy"] = policy
            s.execute(update(CertificationRun).where(CertificationRun.id == waiting).values(evidence=evidence))
        return as_user("bob").get(f"{API}/runs/{waiting}").json()["review"]

    assert set_policy({"version": "2026-12", "sha256": "ab" * 32})["policy"] == {"version": "2026-12",
                                                                                "sha256": "ab" * 32}
    assert set_policy(None)["policy"] is None


def test_unknown_run_is_404(as_user: Callable[..., Any]) -> None:
    refused(as_user("bob").get(f"{API}/runs/no-such-run"), 404, "not_found", "no certification run with id")
    refused(approve(as_user, "bob", "no-such-run", "model_validator", "f" * 64), 404, "not_found", "no-such-run")


def test_broken_roles_configuration_is_500(as_user: Callable[..., Any], roles_file: Path) -> None:
    roles_file.write_text("users: [bob]\n")
    refused(as_user("bob").get(f"{API}/me"), 500, "config", "expected a mapping under 'roles'")


# ---------------------------------------------------------------------------------------------- the UI cookie
def test_cookie_auth_needs_the_page_csrf_header_for_changes(client: Any, token: Callable[..., str], engine: Any,
                                                            waiting: str) -> None:
    from modelcert_airflow.auth import CSRF_HEADER, csrf_for

    tok = token("bob")
    client.cookies.set("_token", tok)
    try:
        assert client.get(f"{API}/me").json()["authenticated_via"] == "cookie"
        body = {"role": "model_validator", "evidence_digest": digest_of(engine, waiting)}
        r = client.post(f"{API}/runs/{waiting}/approve", json=body)
        refused(r, 403, "csrf", CSRF_HEADER)
        r = client.post(f"{API}/runs/{waiting}/approve", json=body, headers={CSRF_HEADER: csrf_for(token("dave"))})
        refused(r, 403, "csrf", CSRF_HEADER)
        r = client.post(f"{API}/runs/{waiting}/approve", json=body, headers={CSRF_HEADER: csrf_for(tok)})
        assert r.status_code == 201, r.text
    finally:
        client.cookies.clear()
