"""The findings register: every failed, inconclusive or waived check of a decided run, until it is closed.

A certification run that reaches a verdict (rejected, or awaiting sign-off) records one *finding* per check that
did not pass: a required check that failed or is inconclusive, and a warning (a check the spec marked
``required: false`` that failed or is inconclusive — the "waived" checks an approver is shown). A finding names
its check by key ``<stage>.<check>[<subject>]``, so the same problem in the next version's run is the same finding.

Severity (what it means for sign-off is the risk policy's call, ``findings.block_signoff_on``):

* ``high``   — a *required* check that failed or is inconclusive and is one of the tier's ``mandatory_checks``;
* ``medium`` — any other required check that failed or is inconclusive;
* ``low``    — a warning: a non-required (waived) check that failed or is inconclusive.

A finding is *blocking* when the policy of the run's tier says so: its severity is in ``block_signoff_on``, or it
is an inconclusive required check and the tier's ``inconclusive.action`` is ``accept_risk``. A blocking finding
must be accepted — by a holder of the role the policy names (``inconclusive.by`` or ``findings.accept_by``), with
a written reason and the evidence digest the acceptor saw, never by the submitter (``governance.accept_findings``)
— before anyone may approve the run or a certificate is issued (``pipeline.signoff_state`` / ``promote``).

**Carry-over.** When a later run of the same model name is decided, each open finding of an earlier run (the last
of its chain) is, by key: *closed* with the reason when the new run's check passes; *carried* when it does not
pass or was not judged — the new run's finding for that key points back at it (``carried_from``), and a key the
new run did not judge at all is copied into the new run as it was. Recording is idempotent: deciding again updates
the same rows (one per run and key), never duplicates.

This module decides nothing about who may accept (``modelcert.governance``) and reads the policy it is given (the
caller looks up the run's policy): it imports neither, so both can import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from modelcert import audit
from modelcert.db.models import AuditEvent, CertificationRun, CheckResult, Finding, StageResult
from modelcert.db.session import reader
from modelcert.lifecycle import CERTIFICATION, SYSTEM, load_run, utcnow

if TYPE_CHECKING:
    from modelcert.policy import TierPolicy

#: Audit actions of the register.
ACCEPTED = "finding_accepted"
RECORDED = "findings_recorded"
REMEDIATION = "finding_remediation"
#: Check-row names that differ from the policy's ``<stage>.<check>`` name of the bound that judged them.
POLICY_KEYS = {("drift", "drifted_share"): "drift.max_drifted_share",
               ("robustness", "robust_accuracy"): "robustness.min_robust_accuracy",
               ("robustness", "noise_flip_rate"): "robustness.max_flip_rate"}
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
#: What each kind of check measures, in plain words (the finding's meaning starts with it).
PLAIN = {
    "roc_auc": "how well the model ranks positive cases above negative ones",
    "expected_calibration_error": "how far predicted probabilities are from observed frequencies",
    "brier_score": "the mean squared error of the predicted probabilities",
    "disparate_impact": "the ratio of favourable-outcome rates between a group and the reference group",
    "statistical_parity_difference": "the difference in favourable-outcome rates between a group and the reference",
    "equal_opportunity_difference": "the difference in true-positive rates between a group and the reference",
    "average_odds_difference": "the average difference in true- and false-positive rates between groups",
    "base_rate_difference": "the difference in actual positive rates between groups",
    "null_fraction": "the share of missing values",
    "duplicate_fraction": "the share of duplicated rows",
    "leakage_fraction": "the share of test rows that also occur in the training data",
    "drifted_share": "the share of columns whose distribution moved away from the reference data",
    "robust_accuracy": "the accuracy left under adversarial perturbation",
    "noise_flip_rate": "the share of predictions that flip under small random noise",
}


def key_of(stage: str, name: str, subject: str) -> str:
    """``<stage>.<check>[<subject>]``: the finding's identity across runs of a model."""
    return f"{stage}.{name}" + (f"[{subject}]" if subject else "")


def policy_key(stage: str, name: str) -> str:
    return POLICY_KEYS.get((stage, name), f"{stage}.{name}")


def severity_of(stage: str, name: str, required: bool, tier: TierPolicy | None) -> str:
    """high: a required mandatory check of the tier; medium: another required check; low: a warning."""
    if not required:
        return "low"
    if tier is not None and policy_key(stage, name) in tier.mandatory_checks:
        return "high"
    return "medium"


def _num(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _bound(threshold: dict[str, Any] | None) -> str:
    if not threshold:
        return "its bound"
    parts = []
    for key, sign in (("min", "≥"), ("max", "≤"), ("abs_max", "|x| ≤")):
        if threshold.get(key) is not None:
            parts.append(f"{sign} {_num(threshold[key])}")
    b = threshold.get("between")
    if isinstance(b, (list, tuple)) and len(b) == 2:
        parts.append(f"between {_num(b[0])} and {_num(b[1])}")
    return " and ".join(parts) or "its bound"


def meaning_of(stage: str, name: str, subject: str, verdict: str, required: bool, value: float | None,
               threshold: dict[str, Any] | None, detail: dict[str, Any] | None) -> str:
    """What the finding means, in plain words: what was measured, what the bar was, and what the verdict says."""
    what = PLAIN.get(name, f"the {stage.replace('_', ' ')} measure {name.replace('_', ' ')}")
    about = f" for {subject}" if subject else ""
    ci = (detail or {}).get("ci95")
    interval = (f" (95% interval {_num(ci[0])} to {_num(ci[1])})"
                if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci else "")
    bar = _bound(threshold)
    if verdict == "inconclusive":
        text = (f"{what.capitalize()}{about} is {_num(value)}{interval}; the bar is {bar}. The interval contains "
                "values on both sides of the bar, so the data cannot tell whether the model meets it; more data "
                "(a larger test set, or more of the group) may settle it.")
    elif value is None:
        text = f"{what.capitalize()}{about} could not be measured, so the bar {bar} is not met."
    else:
        text = (f"{what.capitalize()}{about} is {_num(value)}{interval}, which does not meet the bar {bar}.")
    if not required:
        text += " The spec marks this check required: false, so it warns instead of rejecting."
    return text


# --------------------------------------------------------------------------------------------- recording
@dataclass(frozen=True)
class Rules:
    """What the run's tier policy says about findings (fixed on each finding when it is recorded)."""

    block_on: frozenset[str]
    accept_by: str
    inconclusive_action: str
    inconclusive_by: str | None

    @classmethod
    def of(cls, tier: TierPolicy | None) -> Rules:
        if tier is None:
            return cls(frozenset(), "model_validator", "reject", None)
        return cls(frozenset(tier.findings.block_signoff_on), tier.findings.accept_by, tier.inconclusive.action,
                   tier.inconclusive.by)

    def blocking(self, severity: str, verdict: str, required: bool) -> bool:
        risk = verdict == "inconclusive" and required and self.inconclusive_action == "accept_risk"
        return risk or severity in self.block_on

    def role(self, verdict: str, required: bool) -> str:
        risk = verdict == "inconclusive" and required and self.inconclusive_action == "accept_risk"
        if risk and self.inconclusive_by:
            return self.inconclusive_by
        return self.accept_by


def _judged(s: Session, run_id: str) -> list[tuple[CheckResult, str]]:
    return list(s.execute(select(CheckResult, StageResult.stage)
                          .join(StageResult, CheckResult.stage_result_id == StageResult.id)
                          .where(StageResult.run_id == run_id)
                          .order_by(StageResult.stage, CheckResult.position)).all())


def _model_name(s: Session, run: CertificationRun) -> str:
    from modelcert.db.models import ModelVersion

    mv = s.get(ModelVersion, run.model_version_id) if run.model_version_id is not None else None
    return mv.name if mv is not None else str((run.spec or {}).get("model", {}).get("name", ""))


def record(s: Session, run: CertificationRun, tier: TierPolicy | None) -> dict[str, list[str]]:
    """Record the findings of ``run`` (just decided: rejected or awaiting sign-off) and carry over or close the
    open findings of the model's earlier runs. Idempotent. Returns the keys created, updated, carried and closed
    (an audit event ``findings_recorded`` names them when anything changed)."""
    rules = Rules.of(tier)
    name = _model_name(s, run)
    rows = _judged(s, run.id)
    verdict_by_key: dict[str, str | None] = {}
    bad: dict[str, tuple[CheckResult, str]] = {}
    for c, stage in rows:
        key = key_of(stage, c.name, c.subject or "")
        verdict_by_key[key] = c.verdict
        if c.verdict in ("fail", "inconclusive"):
            bad[key] = (c, stage)
    existing = {f.key: f for f in s.execute(select(Finding).where(Finding.run_id == run.id)
                                            .with_for_update()).scalars()}
    earlier = _open_heads(s, name, run.id)
    out: dict[str, list[str]] = {"created": [], "updated": [], "carried": [], "closed": [], "resolved": []}
    for key, (c, stage) in bad.items():
        sev = severity_of(stage, c.name, c.required, tier)
        verdict = str(c.verdict)
        fields = {"model_name": name, "severity": sev, "verdict": verdict, "required": c.required,
                  "message": c.message or "", "owner": run.submitter,
                  "meaning": meaning_of(stage, c.name, c.subject or "", verdict, c.required, c.value, c.threshold,
                                        c.detail),
                  "blocking": rules.blocking(sev, verdict, c.required), "accept_role": rules.role(verdict, c.required)}
        old = earlier.get(key)
        f = existing.get(key)
        if f is None:
            f = Finding(run_id=run.id, key=key, status="open", reason="", remediation=old.remediation if old else "",
                        carried_from=old.id if old else None, **fields)
            s.add(f)
            out["created"].append(key)
        elif f.status == "open" and any(getattr(f, k) != v for k, v in fields.items()):
            for k, v in fields.items():
                setattr(f, k, v)
            out["updated"].append(key)
        if old is not None and key in out["created"]:
            out["carried"].append(key)
    # This run's own open findings whose check passes (or is no longer judged as failing) after a stage re-run.
    for key, f in existing.items():
        if key not in bad and key in verdict_by_key and f.status == "open":
            _close(s, f, f"closed automatically: {key} no longer fails in this run (a stage was re-run)")
            out["resolved"].append(key)
    # Earlier runs' open findings: closed when the check passes here, carried when it was not judged here.
    for key, old in earlier.items():
        if key in bad:
            continue
        if verdict_by_key.get(key) == "pass":
            _close(s, old, f"closed automatically: {key} passes in run {run.id} "
                           f"(model {name} version {_version(run)})")
            out["closed"].append(key)
        elif key not in existing:
            s.add(Finding(run_id=run.id, key=key, model_name=name, severity=old.severity, verdict=old.verdict,
                          required=old.required, message=old.message, owner=run.submitter,
                          meaning=old.meaning + f" Carried over from run {old.run_id}: not judged in this run.",
                          remediation=old.remediation, status="open", reason="", carried_from=old.id,
                          blocking=rules.blocking(old.severity, old.verdict, old.required),
                          accept_role=rules.role(old.verdict, old.required)))
            out["carried"].append(key)
    s.flush()
    if any(out.values()):
        audit.append(s, actor=SYSTEM, action=RECORDED, entity_type="run", entity_id=run.id,
                     payload={k: v for k, v in out.items() if v})
    return out


def _version(run: CertificationRun) -> str:
    return str((run.spec or {}).get("model", {}).get("version", "?"))


def _close(s: Session, f: Finding, reason: str) -> None:
    f.status = "closed"
    f.reason = reason
    audit.append(s, actor=SYSTEM, action="finding_closed", entity_type="run", entity_id=f.run_id,
                 payload={"finding": f.id, "key": f.key, "reason": reason})


def _open_heads(s: Session, model_name: str, run_id: str) -> dict[str, Finding]:
    """The open findings of the model's other certification runs that no later finding carries yet, by key
    (the most recent when two runs left the same key open). Locked: two decides at once record once."""
    carried = select(Finding.carried_from).where(Finding.carried_from.is_not(None))
    rows = s.execute(select(Finding).join(CertificationRun, Finding.run_id == CertificationRun.id)
                     .where(Finding.model_name == model_name, Finding.run_id != run_id, Finding.status == "open",
                            CertificationRun.kind == CERTIFICATION, Finding.id.not_in(carried))
                     .order_by(Finding.id).with_for_update(of=Finding)).scalars()
    return {f.key: f for f in rows}


# --------------------------------------------------------------------------------------------- reading
def as_dict(f: Finding) -> dict[str, Any]:
    return {"id": f.id, "key": f.key, "run_id": f.run_id, "model": f.model_name, "severity": f.severity,
            "verdict": f.verdict, "required": f.required, "message": f.message, "meaning": f.meaning,
            "owner": f.owner, "remediation": f.remediation, "blocking": f.blocking, "accept_role": f.accept_role,
            "status": f.status, "accepted_by": f.accepted_by, "accepted_role": f.accepted_role, "reason": f.reason,
            "evidence_digest": f.evidence_digest,
            "accepted_at": f.accepted_at.isoformat() if f.accepted_at else None, "carried_from": f.carried_from,
            "created_at": f.created_at.isoformat() if f.created_at else None}


def of_run(s: Session, run_id: str) -> list[Finding]:
    """The run's findings, most severe first (then blocking, then by key)."""
    rows = list(s.execute(select(Finding).where(Finding.run_id == run_id)).scalars())
    return sorted(rows, key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), not f.blocking, f.key))


def list_findings(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    with reader(engine) as s:
        load_run(s, run_id)
        return [as_dict(f) for f in of_run(s, run_id)]


def open_blocking(s: Session, run_id: str) -> list[Finding]:
    """The run's findings that block sign-off and are not accepted (nor closed)."""
    return [f for f in of_run(s, run_id) if f.blocking and f.status == "open"]


def unaccepted(s: Session, run: CertificationRun) -> list[str]:
    """Before a certificate is issued, recomputed from the rows and the audit log (not from a status column
    alone): every blocking finding is accepted for this run's evidence digest, and its acceptance is an audit
    event. One line per finding that does not hold."""
    problems: list[str] = []
    accepted_ids = {str(p.get("finding")) for p in s.execute(
        select(AuditEvent.payload).where(AuditEvent.action == ACCEPTED, AuditEvent.entity_type == "run",
                                         AuditEvent.entity_id == run.id)).scalars() if isinstance(p, dict)}
    for f in of_run(s, run.id):
        if not f.blocking or f.status == "closed":
            continue
        if f.status != "accepted":
            problems.append(f"finding {f.id} ({f.key}, {f.severity}, {f.verdict}) is open: a {f.accept_role} must "
                            "accept it first")
        elif f.evidence_digest != run.evidence_digest:
            problems.append(f"finding {f.id} ({f.key}) was accepted for other evidence")
        elif str(f.id) not in accepted_ids:
            problems.append(f"finding {f.id} ({f.key}) is marked accepted but no {ACCEPTED} audit event records it")
    return problems


def accept_rows(s: Session, run: CertificationRun, rows: list[Finding], *, who: str, via: str, role: str,
                reason: str, digest: str) -> list[dict[str, Any]]:
    """Mark ``rows`` accepted (the caller checked every rule) and write one audit event per acceptance."""
    now = utcnow()
    out = []
    for f in rows:
        f.status = "accepted"
        f.accepted_by = who
        f.accepted_role = role
        f.reason = reason
        f.evidence_digest = digest
        f.accepted_at = now
        s.flush()
        audit.append(s, actor=who, action=ACCEPTED, entity_type="run", entity_id=run.id,
                     payload={"finding": f.id, "key": f.key, "severity": f.severity, "verdict": f.verdict,
                              "role": role, "reason": reason, "evidence_digest": digest, "authenticated_via": via})
        out.append(as_dict(f))
    return out


def set_remediation(s: Session, f: Finding, *, who: str, text: str) -> None:
    f.remediation = text
    audit.append(s, actor=who, action=REMEDIATION, entity_type="run", entity_id=f.run_id,
                 payload={"finding": f.id, "key": f.key, "remediation": text})
