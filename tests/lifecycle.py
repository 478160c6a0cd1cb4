"""Shared lifecycle helpers for store tests: fast fake stages and a tiny audit spec.

Fixtures ``verdicts`` and ``spec_path`` are imported into tests/conftest.py, so every test can use them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelcert import pipeline
from modelcert.errors import ModelcertError
from modelcert.stages import STAGE_NAMES
from modelcert.stages.base import Check, StageOutcome, not_applicable, outcome
from modelcert.thresholds import Threshold
from tests.conftest import write_synthetic

ROLES = {"model_validator": {"bob"}, "risk_officer": {"dave"}}


@dataclass
class FakeStage:
    """``verdict``: passed, failed, error, not_applicable, or ``inconclusive[:CHECK]`` (interval 0.4–0.7 against
    ≥ 0.5; CHECK names the check, e.g. ``inconclusive:disparate_impact`` for a mandatory one of the high tier)."""

    name: str
    verdict: str = "passed"
    library: str = ""

    def run(self, ctx: Any) -> StageOutcome:
        if self.verdict == "error":
            raise ModelcertError(f"{self.name}: broken input")
        if self.verdict == "not_applicable":
            return not_applicable(self.name, "does not apply here", library="")
        rows = Check.info("rows", float(len(ctx.frame("test"))))
        if self.verdict.startswith("inconclusive"):
            check = self.verdict.partition(":")[2] or "score"
            return outcome(self.name, [Check.interval_judged(check, 0.55, (0.4, 0.7), Threshold(min=0.5),
                                                             subject="all"), rows], library="")
        value = 0.9 if self.verdict == "passed" else 0.1
        return outcome(self.name, [Check.judged("score", value, Threshold(min=0.5), subject="all"), rows],
                       library="")


@pytest.fixture
def verdicts(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    table = {name: "passed" for name in STAGE_NAMES}
    monkeypatch.setattr(pipeline, "get_stage", lambda name: FakeStage(name, table[name]))
    return table


def tiny_audit_data() -> pd.DataFrame:
    return pd.DataFrame({"x": range(40), "sex": ["m", "f"] * 20, "y": [0, 1, 1, 0] * 10, "pred": [1, 0] * 20})


def write_tiny_audit_spec(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A predictions-only spec on 40 rows (two approvers, a one-hour sign-off timeout): (path, spec dict)."""
    return write_synthetic(tmp_path, {"test": tiny_audit_data()}, {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}, "extra_columns": ["x"]},
        "signoff": {"required": {"model_validator": 1, "risk_officer": 1}, "timeout": "1h"},
    })


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return write_tiny_audit_spec(tmp_path)[0]


def superuser(engine: Any, *statements: str) -> None:
    """Edit rows as a database superuser would: the protecting triggers off for this session
    (``session_replication_role = replica``), autocommit, outside any modelcert code path."""
    from sqlalchemy import create_engine, text

    su = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    try:
        with su.connect() as conn:
            conn.execute(text("SET session_replication_role = replica"))
            for st in statements:
                conn.execute(text(st))
    finally:
        su.dispose()


def run_all(engine: Any, spec_path: Path, key: str = "test/1") -> str:
    reg = pipeline.register(engine, spec_path, run_key=key, triggered_by="alice")
    for name in STAGE_NAMES:
        pipeline.run_stage(engine, reg.run_id, name)
    pipeline.decide(engine, reg.run_id)
    return reg.run_id




def accept_blocking_findings(engine: Any, run_id: str, roles: dict[str, set[str]] | None = None,
                             acceptors: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Accept every open finding that blocks sign-off of ``run_id``, each by a holder of the role the policy
    names (``acceptors``: role -> user; default dave for risk_officer, bob for model_validator), with a reason and
    the digest the acceptor is shown. What a test or the demo does before approving a run with inconclusive
    checks under an accept_risk policy. Returns the accepted findings (none when nothing blocks)."""
    from modelcert import findings
    from modelcert.db.session import reader
    from modelcert.governance import Identity, accept_findings

    acceptors = acceptors or {"risk_officer": "dave", "model_validator": "bob"}
    with reader(engine) as s:
        needed = sorted({f.accept_role for f in findings.open_blocking(s, run_id)})
    done: list[dict[str, Any]] = []
    for role in needed:
        ids = [f["id"] for f in findings.list_findings(engine, run_id)
               if f["blocking"] and f["status"] == "open" and f["accept_role"] == role]
        out = accept_findings(engine, run_id, Identity(acceptors[role], "test"), role=role, finding_ids=ids,
                              reason="accepted for the test: the interval straddles the bar on small data",
                              evidence_digest=digest_shown(engine, run_id), roles=roles or ROLES)
        done += out["accepted"]
    return done
def certify_recorded(engine: Any, spec: Path, run_key: str) -> str:
    """A certificate through the pipeline functions with every stage result recorded directly as passed (the
    certification stages are not what the caller tests) and two real sign-offs; returns the certificate id."""
    from modelcert.governance import Identity, record_decision

    reg = pipeline.register(engine, spec, run_key=run_key, triggered_by="alice")
    now = pipeline.utcnow()
    for name in STAGE_NAMES:
        # the high-tier policy wants an attack executed on the model: the recorded robustness result says one ran
        summary = {"attacks_run": ["hop_skip_jump"]} if name == "robustness" else {}
        pipeline.save_stage(engine, reg.run_id, StageOutcome(stage=name, status="passed", checks=(
            Check(name="recorded_for_test", value=1.0, passed=True),), summary=summary), started=now, duration_s=0.0)
    assert pipeline.decide(engine, reg.run_id)["status"] == "awaiting_signoff"
    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        record_decision(engine, reg.run_id, Identity(who, "test"), role=role, decision="approve", roles=ROLES,
                        evidence_digest=digest_shown(engine, reg.run_id))
    return str(pipeline.promote(engine, reg.run_id)["certificate_id"])


def digest_shown(engine: Any, run_id: str) -> str:
    """The evidence digest an approver is shown for a run (its report), read the way a client reads it: every
    sign-off names the digest its approver saw; nothing fills it in for them."""
    from modelcert import report

    return str(report.run_report(engine, run_id)["evidence_digest"])
