"""Three-way verdicts at the gate and the findings register, against a real PostgreSQL with small fake stages.

Each policy action for an inconclusive required check (reject / accept_risk / warn), the register (severity,
idempotent recording, carry-over to the next version, automatic closing), the acceptance rules (role, reason,
digest, four eyes, audit event), sign-off and promote blocked until accepted, and tampering found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelcert import audit, findings, pipeline, policy, report
from modelcert.db.models import AuditEvent, CheckResult, Finding
from modelcert.db.session import reader
from modelcert.errors import LifecycleError, ModelcertError, SignoffError
from modelcert.governance import Identity, accept_findings, acceptance_options, edit_remediation, record_decision
from modelcert.review import approval_summary, summary_lines
from modelcert.stages import STAGE_NAMES
from modelcert.stages.base import Check, StageOutcome, outcome
from modelcert.thresholds import Threshold
from tests.conftest import write_synthetic
from tests.lifecycle import ROLES, digest_shown, superuser, tiny_audit_data

pytestmark = pytest.mark.store
#: alice submits (and holds risk_officer here, to prove four eyes beats the role).
ROLES_4E = {**ROLES, "risk_officer": {"dave", "alice"}}


@dataclass
class Fake:
    """One check per stage, with the verdict the test asks for: passed, failed, inconclusive (interval 0.4–0.7
    against ≥ 0.5), warning (a failed non-required check)."""

    name: str
    verdict: str = "passed"
    check: str = "score"
    library: str = ""

    def run(self, ctx: Any) -> StageOutcome:
        t = Threshold(min=0.5, required=self.verdict != "warning")
        if self.verdict == "inconclusive":
            c = Check.interval_judged(self.check, 0.55, (0.4, 0.7), t, subject="all")
        else:
            c = Check.judged(self.check, 0.9 if self.verdict == "passed" else 0.1, t, subject="all")
        return outcome(self.name, [c], library="")


@pytest.fixture
def plan(monkeypatch: pytest.MonkeyPatch) -> dict[str, Fake]:
    table = {name: Fake(name) for name in STAGE_NAMES}
    monkeypatch.setattr(pipeline, "get_stage", lambda name: table[name])
    return table


def set_inconclusive_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str) -> None:
    """The shipped policy with the high tier's ``inconclusive:`` line replaced, as the policy in force of the
    test's fresh database (its first use records it as applied)."""
    text = policy.DEFAULT_POLICY_FILE.read_text()
    shipped = "inconclusive: {action: accept_risk, by: risk_officer}"
    assert text.count(shipped) == 1
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(shipped, line))
    monkeypatch.setenv(policy.POLICY_ENV, str(path))


def spec(tmp_path: Path, version: str = "1") -> Path:
    d = tmp_path / f"v{version}"
    d.mkdir()
    return write_synthetic(d, {"test": tiny_audit_data()}, {
        "model": {"version": version},
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}, "extra_columns": ["x"]},
        "signoff": {"required": {"model_validator": 1, "risk_officer": 1}, "timeout": "1h"},
    })[0]


def run(engine: Any, path: Path, key: str) -> dict[str, Any]:
    reg = pipeline.register(engine, path, run_key=key, triggered_by="alice")
    for name in STAGE_NAMES:
        pipeline.run_stage(engine, reg.run_id, name)
    return pipeline.decide(engine, reg.run_id)


def rows(engine: Any, run_id: str | None = None) -> list[Finding]:
    with reader(engine) as s:
        q = select(Finding).order_by(Finding.id)
        return list(s.execute(q.where(Finding.run_id == run_id) if run_id else q).scalars())


def events(engine: Any, action: str) -> list[AuditEvent]:
    with reader(engine) as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


def accept(engine: Any, run_id: str, who: str = "dave", role: str = "risk_officer", **kw: Any) -> dict[str, Any]:
    kw.setdefault("evidence_digest", digest_shown(engine, run_id))
    kw.setdefault("reason", "interval straddles the bar on 40 rows; monitored monthly")
    kw.setdefault("roles", ROLES_4E)
    return accept_findings(engine, run_id, Identity(who, "test"), role=role, **kw)


def approve_both(engine: Any, run_id: str) -> None:
    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        record_decision(engine, run_id, Identity(who, "test"), role=role, decision="approve", roles=ROLES,
                        evidence_digest=digest_shown(engine, run_id))


# --------------------------------------------------------------------------------------------- the gate
def test_check_rows_store_the_three_way_verdict(engine: Any, spec_path: Path, plan: dict[str, Fake]) -> None:
    plan["fairness"].verdict, plan["drift"].verdict = "inconclusive", "warning"
    out = run(engine, spec_path, "v/1")
    with reader(engine) as s:
        stored = [(c.verdict, c.passed) for c in s.execute(select(CheckResult)).scalars()]
    passing = len(plan) - 2  # every stage but fairness (inconclusive) and drift (a failed warning)
    assert sorted(stored, key=str) == sorted([("pass", True)] * passing + [("inconclusive", None), ("fail", False)],
                                             key=str)
    checks = {st["stage"]: st["checks"][0] for st in report.run_report(engine, out["run_id"])["stages"]}
    assert checks["fairness"]["verdict"] == "inconclusive" and checks["fairness"]["detail"]["ci95"] == [0.4, 0.7]


def test_inconclusive_under_reject_rejects_saying_more_data_may_settle_it(
        engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan: dict[str, Fake]) -> None:
    set_inconclusive_action(tmp_path, monkeypatch, "inconclusive: {action: reject}")
    plan["fairness"].verdict, plan["fairness"].check = "inconclusive", "disparate_impact"
    out = run(engine, spec(tmp_path), "rej/1")
    assert out["status"] == "rejected"
    [reason] = out["reasons"]
    assert reason.startswith("fairness: disparate_impact[all]:") and "inconclusive" in reason
    assert "more data may settle it" in reason
    [f] = rows(engine)
    assert (f.key, f.severity, f.verdict, f.status, f.owner) == (
        "fairness.disparate_impact[all]", "high", "inconclusive", "open", "alice")
    assert "cannot tell whether the model meets it" in f.meaning and "0.4 to 0.7" in f.meaning


def test_inconclusive_under_warn_awaits_signoff_with_a_warning_for_the_approver(
        engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan: dict[str, Fake]) -> None:
    set_inconclusive_action(tmp_path, monkeypatch, "inconclusive: {action: warn}")
    plan["fairness"].verdict = "inconclusive"  # "score": not a mandatory check → medium, not blocking
    out = run(engine, spec(tmp_path), "warn/1")
    assert out["status"] == "awaiting_signoff" and out["findings_to_accept"] == []
    assert "warning for the approvers" in out["reasons"][0]
    summary = approval_summary(engine, out["run_id"])
    [w] = summary["inconclusive"]
    assert (w["check"], w["subject"], w["required"], w["ci95"]) == ("fairness.score", "all", True, [0.4, 0.7])
    assert any("inconclusive: 1 check(s)" in line for line in summary_lines(summary))
    [f] = rows(engine)
    assert (f.severity, f.blocking, f.status) == ("medium", False, "open")
    approve_both(engine, out["run_id"])
    assert pipeline.signoff_state(engine, out["run_id"]).state == "approved"
    assert pipeline.promote(engine, out["run_id"])["status"] == "valid"


def test_inconclusive_under_accept_risk_blocks_until_the_named_role_accepts(
        engine: Any, tmp_path: Path, plan: dict[str, Fake]) -> None:
    """The shipped high tier: accept_risk by risk_officer. Approvals, the sensor's state and promote all wait for
    the acceptance; every refusal names its rule; the acceptance is audited with reason and digest."""
    plan["fairness"].verdict, plan["fairness"].check = "inconclusive", "disparate_impact"
    out = run(engine, spec(tmp_path), "risk/1")
    run_id = out["run_id"]
    assert out["status"] == "awaiting_signoff"
    assert "needs an explicit risk acceptance by a risk_officer" in out["reasons"][0]
    [f] = rows(engine)
    assert (f.severity, f.blocking, f.accept_role, f.status) == ("high", True, "risk_officer", "open")
    assert out["findings_to_accept"] == [f.id]

    with pytest.raises(SignoffError, match="open finding") as refused:
        record_decision(engine, run_id, Identity("bob", "t"), role="model_validator", decision="approve",
                        roles=ROLES, evidence_digest=digest_shown(engine, run_id))
    assert refused.value.code == "findings_open" and "fairness.disparate_impact[all]" in str(refused.value)
    state = pipeline.signoff_state(engine, run_id)
    assert state.state == "waiting" and state.findings_open == [f.id] and "by risk_officer" in state.detail
    with pytest.raises(ModelcertError):
        pipeline.promote(engine, run_id)

    cases = [({"who": "bob", "role": "model_validator"}, "role_not_required", "accepted by a risk_officer"),
             ({"who": "alice"}, "four_eyes", "four-eyes"),
             ({"who": "frank"}, "forbidden", "does not hold the role"),
             ({"reason": "  "}, "invalid", "reason: required"),
             ({"evidence_digest": ""}, "invalid", "evidence_digest: required"),
             ({"evidence_digest": "f" * 64}, "evidence_mismatch", "not this run's"),
             ({"finding_ids": [f.id + 999]}, "not_found", "is not a finding of run")]
    for kw, code, text in cases:
        with pytest.raises(SignoffError, match=text) as exc:
            accept(engine, run_id, **{"finding_ids": [f.id], **kw})
        assert exc.value.code == code, (kw, exc.value)
    with pytest.raises(SignoffError, match="no open finding a model_validator accepts"):
        accept(engine, run_id, who="bob", role="model_validator")  # --all: nothing for this role
    assert events(engine, findings.ACCEPTED) == [] and rows(engine)[0].status == "open"
    assert acceptance_options(engine, run_id, "dave", ROLES)["allowed"] == [f.id]
    assert acceptance_options(engine, run_id, "bob", ROLES)["refused"][f.id]["code"] == "forbidden"

    done = accept(engine, run_id, finding_ids=[f.id])
    assert done["still_blocking"] == [] and done["accepted"][0]["accepted_by"] == "dave"
    with pytest.raises(SignoffError, match="is accepted") as again:
        accept(engine, run_id, finding_ids=[f.id])
    assert again.value.code == "duplicate"
    [ev] = events(engine, findings.ACCEPTED)
    assert ev.actor == "dave" and ev.entity_id == run_id
    assert ev.payload["finding"] == f.id and ev.payload["reason"].startswith("interval straddles")
    assert ev.payload["evidence_digest"] == digest_shown(engine, run_id) and ev.payload["role"] == "risk_officer"
    [f] = rows(engine)
    assert (f.status, f.accepted_by, f.accepted_role, f.evidence_digest) == (
        "accepted", "dave", "risk_officer", digest_shown(engine, run_id))
    assert pipeline.signoff_state(engine, run_id).missing == {"model_validator": 1, "risk_officer": 1}
    approve_both(engine, run_id)
    assert pipeline.signoff_state(engine, run_id).state == "approved"
    cert = pipeline.promote(engine, run_id)
    assert cert["status"] == "valid"
    with reader(engine) as s:
        assert audit.verify(s).ok


def test_an_acceptance_forged_in_sql_is_refused_at_promote_and_found_by_verify(
        engine: Any, tmp_path: Path, plan: dict[str, Fake]) -> None:
    plan["fairness"].verdict, plan["fairness"].check = "inconclusive", "disparate_impact"
    run_id = run(engine, spec(tmp_path), "forge/1")["run_id"]
    digest = digest_shown(engine, run_id)
    superuser(engine, f"UPDATE findings SET status = 'accepted', accepted_by = 'mallory', "
                      f"evidence_digest = '{digest}' WHERE run_id = '{run_id}'")
    approve_both(engine, run_id)  # the row says accepted, so approvals are taken — the certificate is not
    with pytest.raises(LifecycleError, match="no finding_accepted audit event"):
        pipeline.promote(engine, run_id)
    with reader(engine) as s:
        res = audit.verify(s)
    assert not res.ok
    [named] = [p for p in res.problems if p.startswith("findings id")]
    assert "fairness.disparate_impact[all]" in named and "content changed since sealed" in named


def test_an_edited_verdict_is_found_by_verify(engine: Any, spec_path: Path, plan: dict[str, Fake]) -> None:
    plan["fairness"].verdict = "inconclusive"
    run(engine, spec_path, "edit/1")
    superuser(engine, "UPDATE check_results SET verdict = 'pass' WHERE verdict = 'inconclusive'")
    with reader(engine) as s:
        res = audit.verify(s)
    assert not res.ok
    assert any(p.startswith("check_results id") and "score[all]" in p and "content changed" in p
               for p in res.problems), res.problems


# --------------------------------------------------------------------------------------------- the register
def test_findings_are_recorded_once_with_severity_and_meaning(engine: Any, spec_path: Path,
                                                              plan: dict[str, Fake]) -> None:
    plan["performance"].verdict, plan["performance"].check = "failed", "roc_auc"  # mandatory → high
    plan["fairness"].verdict = "failed"                                           # required → medium
    plan["drift"].verdict = "warning"                                             # waived → low
    out = run(engine, spec_path, "sev/1")
    assert out["status"] == "rejected"
    got = {f.key: (f.severity, f.verdict, f.required) for f in rows(engine)}
    assert got == {"performance.roc_auc[all]": ("high", "fail", True), "fairness.score[all]": ("medium", "fail", True),
                   "drift.score[all]": ("low", "fail", False)}
    assert [f["severity"] for f in findings.list_findings(engine, out["run_id"])] == ["high", "medium", "low"]
    low = [f for f in rows(engine) if f.severity == "low"][0]
    assert "required: false" in low.meaning and "does not meet the bar ≥ 0.5" in low.meaning
    before = (len(rows(engine)), len(events(engine, findings.RECORDED)))
    # Deciding again (a retried task) records nothing new.
    with reader(engine) as s:
        run_row = pipeline.load_run(s, out["run_id"])
    assert run_row.status == "rejected"
    from modelcert.db.session import transaction

    with transaction(engine) as s:
        again = pipeline.load_run(s, out["run_id"])
        assert findings.record(s, again, pipeline.tier_policy(s, again)) == {k: [] for k in
                                                                              ("created", "updated", "carried",
                                                                               "closed", "resolved")}
    assert (len(rows(engine)), len(events(engine, findings.RECORDED))) == before


def test_deciding_twice_while_waiting_adds_no_finding(engine: Any, spec_path: Path, plan: dict[str, Fake]) -> None:
    plan["drift"].verdict = "warning"
    first = run(engine, spec_path, "twice/1")
    second = pipeline.decide(engine, first["run_id"])
    assert second["status"] == "awaiting_signoff" and second["findings"] == {}
    assert len(rows(engine)) == 1 and len(events(engine, findings.RECORDED)) == 1


def test_findings_carry_over_to_the_next_version_and_close_when_the_check_passes(
        engine: Any, tmp_path: Path, plan: dict[str, Fake]) -> None:
    plan["performance"].verdict = "warning"                               # still a warning in v2 → carried
    plan["drift"].verdict = "warning"                                     # passes in v2 → closed
    plan["data_quality"].verdict, plan["data_quality"].check = "warning", "only_in_v1"  # not judged in v2 → copied
    v1 = run(engine, spec(tmp_path, "1"), "carry/1")["run_id"]
    old = {f.key: f for f in rows(engine, v1)}
    assert set(old) == {"performance.score[all]", "drift.score[all]", "data_quality.only_in_v1[all]"}
    edit_remediation(engine, v1, old["performance.score[all]"].id, Identity("bob", "t"),
                     text_="retrain with the 2026 applications", roles=ROLES)
    with pytest.raises(SignoffError, match="only a validator") as exc:
        edit_remediation(engine, v1, old["drift.score[all]"].id, Identity("erin", "t"), text_="x",
                         roles={"legal": {"erin"}})
    assert exc.value.code == "forbidden"

    plan["drift"].verdict = "passed"
    plan["data_quality"].verdict, plan["data_quality"].check = "passed", "score"
    out = run(engine, spec(tmp_path, "2"), "carry/2")
    v2 = out["run_id"]
    new = {f.key: f for f in rows(engine, v2)}
    assert set(new) == {"performance.score[all]", "data_quality.only_in_v1[all]"}
    assert new["performance.score[all]"].carried_from == old["performance.score[all]"].id
    assert new["performance.score[all]"].remediation == "retrain with the 2026 applications"
    copied = new["data_quality.only_in_v1[all]"]
    assert copied.carried_from == old["data_quality.only_in_v1[all]"].id and copied.status == "open"
    assert "Carried over from run" in copied.meaning
    closed = {f.key: f for f in rows(engine, v1)}["drift.score[all]"]
    assert closed.status == "closed" and f"passes in run {v2}" in closed.reason and "version 2" in closed.reason
    assert out["findings"]["carried"] and out["findings"]["closed"] == ["drift.score[all]"]
    # A third version carries from v2 (the chain's head), never twice from v1.
    run(engine, spec(tmp_path, "3"), "carry/3")
    third = [f for f in rows(engine) if f.run_id not in (v1, v2)]
    assert sorted(f.carried_from for f in third) == sorted(f.id for f in new.values())


def test_statistics_may_only_tighten_the_policy(tmp_path: Path) -> None:
    from modelcert.errors import SpecError
    from modelcert.spec import parse_spec

    shipped = policy.load_policy(policy.DEFAULT_POLICY_FILE)
    base = {"model": {"name": "m", "version": "1", "owner": "alice"},
            "predictions": {"column": "pred", "positive": [1]},
            "use_case": {"description": "d", "intended_use": "i", "risk_tier": "high"},
            "governance": {"data_retention_days": 30, "consent_basis": "c"},
            "data": {"test": "t.csv", "label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}}}
    loose = parse_spec({**base, "statistics": {"alpha": 0.1, "multiple_testing": "bh", "bootstrap_resamples": 500}})
    with pytest.raises(SpecError) as err:
        policy.enforce(loose, shipped)
    found = [p for p in err.value.problems if p.startswith("statistics.")]
    assert [p.split(":")[0] for p in found] == ["statistics.alpha", "statistics.multiple_testing",
                                               "statistics.bootstrap_resamples"]
    assert "bh (false-discovery rate) is looser than the high-tier policy's holm" in found[1]
    tight = parse_spec({**base, "statistics": {"alpha": 0.01, "bootstrap_resamples": 5000, "seed": 7}})
    eff = policy.effective(tight, shipped).statistics
    assert (eff.alpha, eff.multiple_testing, eff.bootstrap_resamples, eff.seed) == (0.01, "holm", 5000, 7)
    eff = policy.effective(parse_spec(base), shipped).statistics
    assert (eff.alpha, eff.multiple_testing, eff.bootstrap_resamples) == (0.05, "holm", 1000)
    low = parse_spec({**base, "use_case": {**base["use_case"], "risk_tier": "low"},
                      "statistics": {"multiple_testing": "holm"}})
    assert policy.effective(low, shipped).statistics.multiple_testing == "holm"  # stricter than the low tier's bh
    assert policy.effective(parse_spec({**base, "use_case": {**base["use_case"], "risk_tier": "low"}}),
                            shipped).statistics.multiple_testing == "bh"


def test_policy_refuses_accept_risk_without_a_role(tmp_path: Path) -> None:
    text = policy.DEFAULT_POLICY_FILE.read_text().replace("inconclusive: {action: accept_risk, by: risk_officer}",
                                                          "inconclusive: {action: accept_risk}")
    with pytest.raises(policy.PolicyError, match=r"^policy\.tiers\.high\.inconclusive: .*inconclusive\.by: required"):
        policy.parse_policy(text.encode(), source="p.yaml")


# --------------------------------------------------------------------------------------------- the CLI
def test_cli_findings_and_accept_risk(engine: Any, db_url: str, tmp_path: Path, plan: dict[str, Fake],
                                      capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from modelcert.cli import main

    monkeypatch.delenv("MODELCERT_API_URL", raising=False)
    plan["fairness"].verdict, plan["fairness"].check = "inconclusive", "disparate_impact"
    plan["drift"].verdict = "warning"
    run_id = run(engine, spec(tmp_path), "cli/1")["run_id"]
    db = ["--database-url", db_url]
    assert main(["findings", run_id[:8], "--json", *db]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(f["key"], f["severity"], f["blocking"]) for f in listed] == [
        ("fairness.disparate_impact[all]", "high", True), ("drift.score[all]", "low", False)]
    assert main(["report", run_id, *db]) == 0
    text = capsys.readouterr().out
    assert "INCONCLUSIVE" in text and "findings (2)" in text and "blocks sign-off until a risk_officer accepts" in text

    digest = digest_shown(engine, run_id)
    base = ["accept-risk", run_id, "--role", "risk_officer", "--reason", "monitored", *db]
    refusals = [
        ([*base, "--evidence-digest", digest, "--user", "dave"], "--finding ID (repeatable) or --all"),
        ([*base, "--evidence-digest", digest, "--all"], "--user is required"),
        ([*base, "--evidence-digest", "0" * 64, "--all", "--user", "dave"], "refused (evidence_mismatch)"),
        ([*base, "--evidence-digest", digest, "--all", "--user", "alice"], "refused (four_eyes)"),
        ([*base, "--evidence-digest", digest, "--finding", "99999", "--user", "dave"], "refused (not_found)"),
    ]
    for argv, text in refusals:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert main([*base, "--evidence-digest", digest, "--all", "--user", "dave", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # --all: every open finding a risk officer accepts, the warning too (one audit event each).
    assert [f["key"] for f in out["accepted"]] == ["fairness.disparate_impact[all]", "drift.score[all]"]
    assert out["still_blocking"] == []
    evs = events(engine, findings.ACCEPTED)
    assert [e.actor for e in evs] == ["dave", "dave"]
    assert all(e.payload["authenticated_via"].startswith("cli:os-user=") for e in evs)
    fid = str(out["accepted"][1]["id"])
    assert main(["remediate", run_id, "--finding", fid, "--text", "collect 2027 data", "--user", "carol", *db]) == 2
    assert "refused (forbidden)" in capsys.readouterr().err
    assert main(["remediate", run_id, "--finding", fid, "--text", "collect 2027 data", "--user", "bob", *db]) == 0
    capsys.readouterr()
    assert [f.remediation for f in rows(engine) if str(f.id) == fid] == ["collect 2027 data"]
    [ev] = events(engine, findings.REMEDIATION)
    assert ev.actor == "bob" and ev.payload["remediation"] == "collect 2027 data"
