"""The findings register over the API and on the run page: listed for any authenticated user; accepted only by a
holder of the role the policy names, with a reason and the digest shown, through the same rules as the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelcert import findings, pipeline
from tests.lifecycle import run_all
from tests.plugins.modelcert_airflow.conftest import digest_of

pytestmark = pytest.mark.store
API = "/modelcert/api"
UI = "/modelcert/ui"


@pytest.fixture
def risky(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> str:
    """A high-tier run awaiting sign-off whose mandatory disparate impact is inconclusive (shipped policy:
    accept_risk by risk_officer), and whose drift check is a plain inconclusive one (medium, also blocking)."""
    verdicts["fairness"] = "inconclusive:disparate_impact"
    return run_all(engine, spec_path)


def accept_body(engine: Any, run_id: str, **kw: Any) -> dict[str, Any]:
    return {"role": "risk_officer", "reason": "monitored monthly", "evidence_digest": digest_of(engine, run_id),
            "all": True, **kw}


def test_findings_are_listed_and_accepted_over_the_api(as_user: Callable[..., Any], engine: Any, risky: str) -> None:
    listed = as_user("carol").get(f"{API}/runs/{risky}/findings")
    assert listed.status_code == 200
    [f] = listed.json()
    assert (f["key"], f["severity"], f["verdict"], f["blocking"], f["accept_role"]) == (
        "fairness.disparate_impact[all]", "high", "inconclusive", True, "risk_officer")
    # An approval is refused while the finding is open (409, its own code).
    r = as_user("bob").post(f"{API}/runs/{risky}/approve",
                            json={"role": "model_validator", "evidence_digest": digest_of(engine, risky)})
    assert r.status_code == 409 and r.json()["code"] == "findings_open"
    cases = [("bob", {"role": "model_validator"}, 422, "invalid"),  # no open finding a validator accepts (--all)
             ("bob", {"role": "model_validator", "all": False, "finding_ids": [f["id"]]}, 422, "role_not_required"),
             ("alice", {}, 403, "four_eyes"), ("carol", {}, 403, "forbidden"),
             ("dave", {"evidence_digest": "0" * 64}, 409, "evidence_mismatch"),
             ("dave", {"evidence_digest": "nope"}, 422, "invalid"),
             ("dave", {"all": False}, 422, "invalid"),
             ("dave", {"reason": " "}, 422, "invalid")]
    for user, kw, status, code in cases:
        r = as_user(user).post(f"{API}/runs/{risky}/findings/accept", json=accept_body(engine, risky, **kw))
        assert (r.status_code, r.json().get("code")) == (status, code), (user, kw, r.text)
    ok = as_user("dave").post(f"{API}/runs/{risky}/findings/accept", json=accept_body(engine, risky))
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert [a["id"] for a in body["accepted"]] == [f["id"]] and body["still_blocking"] == []
    assert body["accepted"][0]["accepted_by"] == "dave" and body["quorum"]["findings_open"] == []
    [accepted] = findings.list_findings(engine, risky)
    assert accepted["status"] == "accepted" and accepted["reason"] == "monitored monthly"
    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        r = as_user(who).post(f"{API}/runs/{risky}/approve",
                              json={"role": role, "evidence_digest": digest_of(engine, risky)})
        assert r.status_code == 201, r.text
    assert pipeline.signoff_state(engine, risky).state == "approved"


def test_the_run_page_shows_findings_and_the_accept_form_only_to_the_acceptor(
        client: Any, token: Callable[..., str], engine: Any, risky: str) -> None:
    def page(user: str) -> str:
        client.cookies.clear()
        client.cookies.set("_token", token(user))
        try:
            r = client.get(f"{UI}/runs/{risky}")
            assert r.status_code == 200
            return r.text
        finally:
            client.cookies.clear()

    dave = page("dave")
    assert 'id="findings"' in dave and "fairness.disparate_impact[all]" in dave
    assert "blocks sign-off until a risk officer accepts it" in dave
    assert "cannot tell whether the model meets it" in dave
    assert 'id="accept-form"' in dave and f'data-digest="{digest_of(engine, risky)}"' in dave
    assert re.findall(r'name="finding" value="(\d+)" data-role="([a-z_]+)"', dave) == [
        (str(findings.list_findings(engine, risky)[0]["id"]), "risk_officer")]
    assert 'id="review-inconclusive"' in dave and "95% interval 0.4 … 0.7" in dave
    bob = page("bob")  # a validator: sees the findings, no accept form, and why he cannot approve yet
    assert "fairness.disparate_impact[all]" in bob and 'id="accept-form"' not in bob
    assert "must be accepted before it is approved" in bob
    assert 'id="accept-form"' not in page("alice")  # the submitter never accepts her own risk
