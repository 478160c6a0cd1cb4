"""One certification run, step by step: register → stages → decide → (sign-off) → promote.

Each function is one Airflow task (the DAG only wires them) and is also what ``modelcert run`` calls
in-process. Every function is idempotent: calling it again for the same run replaces, never duplicates.
State changes (running, the verdict, error, superseded, certified) are made by ``modelcert.lifecycle``; the
steps here gather what they rest on. Recertification (``modelcert.recertify``) uses the same stage runner,
result store and gate, with its own spec transform and effect.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from modelcert import audit, findings, lifecycle
from modelcert.context import EvalContext
from modelcert.db.models import (
    Certificate,
    CertificationRun,
    CheckResult,
    ModelVersion,
    Signoff,
    StageResult,
)
from modelcert.db.session import reader, transaction
from modelcert.errors import ModelcertError, RunNotFound, SpecError, StoreError
from modelcert.evidence import Evidence
from modelcert.governance import quorum_missing
from modelcert.lifecycle import CERTIFICATION, SYSTEM, TERMINAL, is_final, load_run, utcnow
from modelcert.spec import CertificationSpec, parse_spec
from modelcert.stages import STAGE_NAMES, get_stage
from modelcert.stages.base import StageOutcome, enforce_evaluated, library_version

__all__ = ["TERMINAL", "SYSTEM", "load_run", "utcnow", "quorum_missing", "register", "run_stage", "save_stage",
           "gate", "decide", "signoff_state", "mark_signoff_timeout", "promote"]


@dataclass(frozen=True)
class Registered:
    run_id: str
    status: str
    evidence_digest: str
    model: str
    version: str
    reused: bool

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


# ------------------------------------------------------------------------------------------- register
def register(engine: Engine, spec_path: str | Path, *, run_key: str, triggered_by: str | None = None,
             dag_id: str | None = None, airflow_run_id: str | None = None) -> Registered:
    """Validate the spec, hash the evidence, create (or reuse, by ``run_key``) the run row.

    A spec that fails :func:`modelcert.preflight.preflight` (the same checks as ``modelcert validate``: schema,
    policy, files, hashes, columns, labels, groups), or a run row the database refuses, is recorded as a run in
    status ``error`` with the message, then re-raised: nothing is ever silently dropped."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    from modelcert.preflight import preflight

    path = Path(spec_path).resolve()
    try:
        checked = preflight(path, engine=engine)
    except ModelcertError as exc:
        _record_register_error(engine, path, run_key, exc, triggered_by, dag_id, airflow_run_id)
        raise
    evidence = checked.evidence
    try:
        evidence = replace(evidence, cache=build_cache(checked.context))
    except ModelcertError as exc:  # e.g. the model cannot predict the test set: recorded like any refusal
        _record_register_error(engine, path, run_key, exc, triggered_by, dag_id, airflow_run_id)
        raise
    finally:
        checked.context.release()
    try:
        return _register_run(engine, checked.spec, checked.text, evidence, path, run_key=run_key,
                             triggered_by=triggered_by, dag_id=dag_id, airflow_run_id=airflow_run_id)
    except (OperationalError, InterfaceError):
        raise  # the database is unreachable: nothing can be recorded; the orchestrator retries
    except DBAPIError as exc:
        # The database refused a value (too long, a constraint): the run is still recorded, as error.
        cause = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(getattr(exc, "orig", exc)).strip() else ""
        err = StoreError(f"register: the results database refused the run: {type(getattr(exc, 'orig', exc)).__name__}"
                         f"{': ' + _clip(cause, 200) if cause else ''}")
        _record_register_error(engine, path, run_key, err, triggered_by, dag_id, airflow_run_id)
        raise err from exc


def build_cache(ctx: EvalContext) -> dict[str, Any]:
    """Write the run's evaluation cache (datasets as Parquet, test predictions) from the frames preflight already
    read, so the stages neither re-read the CSV files nor predict again (``modelcert.evalcache``)."""
    from modelcert import evalcache
    from modelcert.home import evaluation_cache_dir

    assert ctx.evidence is not None
    try:
        return evalcache.build(ctx, evaluation_cache_dir(), ctx.evidence.digest)
    except OSError as exc:  # no room or no permission for the cache: the stages read the sources, as before
        import logging

        logging.getLogger("modelcert.cache").warning("evaluation cache not written: %s", exc)
        return {}


def _register_run(engine: Engine, spec: CertificationSpec, text: str, evidence: Evidence, path: Path, *, run_key: str,
                  triggered_by: str | None, dag_id: str | None, airflow_run_id: str | None) -> Registered:
    """Create or restart the run row of a spec that passed preflight, in one transaction."""
    with transaction(engine) as s:
        run, previous = lifecycle.open_run(s, run_key, kind=CERTIFICATION)
        if previous in TERMINAL:
            raise ModelcertError(f"run {run.id} ({run_key}) is already {previous}; "
                                 "start a new run instead of re-running it")
        mv = _model_version(s, spec)
        from modelcert.champion import champion_reference

        evidence = replace(evidence, champion=champion_reference(s, spec))
        changed = previous is not None and run.evidence_digest != evidence.digest
        run.model_version_id = mv.id
        run.spec = spec.model_dump(mode="json")
        run.spec_path = str(path)
        run.spec_base_dir = str(path.parent)
        run.spec_text = text
        run.evidence = evidence.as_dict()
        run.evidence_digest = evidence.digest
        run.submitter = spec.model.owner
        run.triggered_by = triggered_by
        run.airflow_dag_id = dag_id
        run.airflow_run_id = airflow_run_id
        restart = ({"evidence_digest": evidence.digest, "evidence_changed": changed}
                   if changed or previous not in (None, "running") else None)
        lifecycle.start_run(s, run, previous,
                            actor=triggered_by or (spec.model.owner if previous is None else SYSTEM),
                            payload={"model": spec.model.name, "version": spec.model.version,
                                     "evidence_digest": evidence.digest, "run_key": run_key},
                            restart_payload=restart)
        return Registered(run.id, run.status, evidence.digest, spec.model.name, spec.model.version,
                          previous is not None)


def _model_version(s: Session, spec: CertificationSpec) -> ModelVersion:
    """The model version row, created if new; race-free: two runs registering the same new version at once
    both get the one row (INSERT … ON CONFLICT DO NOTHING waits for a concurrent inserter, then SELECT)."""
    from sqlalchemy.dialects.postgresql import insert

    s.execute(insert(ModelVersion).values(name=spec.model.name, version=spec.model.version, owner=spec.model.owner,
                                          risk_tier=spec.use_case.risk_tier, status="registered")
              .on_conflict_do_nothing(index_elements=[ModelVersion.name, ModelVersion.version]))
    return s.execute(select(ModelVersion).where(ModelVersion.name == spec.model.name,
                                                ModelVersion.version == spec.model.version)).scalar_one()


def _clip(text: str, limit: int) -> str:
    """Bounded, NUL-free text for a database column: what a refused input said must not be refused again."""
    text = text.replace("\x00", "\\0")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _spec_text_for_record(path: Path) -> str:
    """The spec as the submitter wrote it, for the error record: at most 1 MiB, undecodable bytes replaced (a
    latin-1 spec must still be recorded), NUL characters escaped (PostgreSQL text cannot hold them)."""
    from modelcert.safe_yaml import MAX_SPEC_BYTES

    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES)
    except OSError:
        return ""
    return raw.decode("utf-8", errors="replace").replace("\x00", "\\0")


def _record_register_error(engine: Engine, path: Path, run_key: str, exc: Exception, triggered_by: str | None,
                           dag_id: str | None, airflow_run_id: str | None) -> None:
    """Record a registration that failed as a run in ``error``, in its own transaction, with every value bounded
    to its column: this must succeed exactly when the input was bad enough to be refused."""
    text = _spec_text_for_record(path) if path.is_file() else ""
    reason = _clip(str(exc), 4000)
    triggered_by = _clip(triggered_by, 128) if triggered_by is not None else None
    dag_id = _clip(dag_id, 250) if dag_id is not None else None
    airflow_run_id = _clip(airflow_run_id, 250) if airflow_run_id is not None else None
    with transaction(engine) as s:
        run, previous = lifecycle.open_run(s, run_key, kind=CERTIFICATION)
        if previous in TERMINAL:
            return
        if previous is None:
            run.spec, run.spec_text, run.evidence, run.evidence_digest = {}, text, {}, ""
            run.spec_path, run.spec_base_dir = _clip(str(path), 4096), _clip(str(path.parent), 4096)
            run.submitter = "unknown"
        run.triggered_by = triggered_by
        run.airflow_dag_id = dag_id
        run.airflow_run_id = airflow_run_id
        lifecycle.record_error(s, run, previous, [reason], actor=triggered_by or SYSTEM,
                               payload={"stage": "register", "reason": reason})


# ------------------------------------------------------------------------------------------- stages
def context_for(run: CertificationRun) -> EvalContext:
    spec = parse_spec(run.spec, source=run.spec_path)
    ev = run.evidence or {}
    evidence = Evidence(spec_sha256=ev.get("spec_sha256", ""), files=ev.get("files", {}), policy=ev.get("policy") or {},
                        champion=ev.get("champion") or {},
                        cache=ev.get("cache") or {})
    from modelcert.home import evaluation_cache_dir

    return EvalContext(spec=spec, base_dir=Path(run.spec_base_dir), evidence=evidence,
                       cache=evidence.cache or None, cache_root=evaluation_cache_dir())


def run_stage(engine: Engine, run_id: str, stage_name: str, *, attempt: int = 1) -> dict[str, Any]:
    """Run one stage and store its result and checks in one transaction, replacing any earlier result.

    Returns a small JSON summary (for XCom). Domain errors are recorded as stage status ``error`` and
    returned; unexpected exceptions are recorded too, then re-raised so the orchestrator can retry."""
    with reader(engine) as s:
        run = load_run(s, run_id)
        if is_final(run):
            raise ModelcertError(f"run {run_id} is {run.status}; its stages can no longer change")
        if not run.spec:
            raise SpecError("the run has no valid spec (registration failed)", source=run.spec_path)
        ctx = context_for(run)
    stage = get_stage(stage_name)
    started = utcnow()
    t0 = time.perf_counter()
    try:
        result, unexpected = guarded(stage_name, stage.library, lambda: stage.run(ctx))
    finally:
        # An isolated model process ends with its stage, not at garbage collection; the frames are freed now, not
        # at the next full collection (see EvalContext.release).
        ctx.release()
    duration = time.perf_counter() - t0
    save_stage(engine, run_id, result, started=started, duration_s=duration, attempt=attempt)
    if unexpected is not None:
        raise unexpected
    return stage_summary(result, duration)


def guarded(stage_name: str, library: str, run: Callable[[], StageOutcome]) -> tuple[StageOutcome, Exception | None]:
    """Run a stage so that it always yields an outcome to store: a domain error becomes status ``error``
    with its message; an unexpected exception too, and is returned so the caller re-raises it after storing;
    an outcome that would pass without having judged the checks it requires becomes ``error`` too."""
    try:
        # The general rule for every stage: passed without judging a required check is an error, not a pass.
        return enforce_evaluated(run()), None
    except ModelcertError as exc:
        return StageOutcome(stage=stage_name, status="error", reason=str(exc), library=library,
                            library_version=library_version(library)), None
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised by the caller
        return StageOutcome(stage=stage_name, status="error", reason=f"unexpected {type(exc).__name__}: {exc}",
                            summary={"traceback": traceback.format_exc(limit=8)}, library=library,
                            library_version=library_version(library)), exc


def stage_summary(result: StageOutcome, duration: float) -> dict[str, Any]:
    return {
        "stage": result.stage,
        "status": result.status,
        "reason": result.reason,
        "checks": len(result.checks),
        "failed": [f"{c.name}[{c.subject}]" if c.subject else c.name for c in result.failures],
        "seconds": round(duration, 3),
    }


def _verdict(status: str, reason: str | None, failed: list[str]) -> tuple[str, str, tuple[str, ...]]:
    return status, reason or "", tuple(sorted(failed))


def save_stage(engine: Engine, run_id: str, result: StageOutcome, *, started: datetime, duration_s: float,
               attempt: int = 1, audit_unchanged: bool = True, audit_extra: dict[str, Any] | None = None) -> None:
    """Replace the stage's result and checks in one transaction (exactly one result set per stage).

    Every recording is audited by default (a re-run task is an event worth keeping); with
    ``audit_unchanged=False`` only a changed verdict is (recertification: re-running a day adds nothing)."""
    failed = [f"{c.name}[{c.subject}]" if c.subject else c.name for c in result.failures]
    with transaction(engine) as s:
        run = load_run(s, run_id)
        # Lock the run row: a task and its overlapping retry (or two stages of one run) write one after the
        # other, so the delete-then-insert below never sees a half-replaced result set or inserts twice.
        s.refresh(run, with_for_update=True)
        existing = s.execute(select(StageResult).where(StageResult.run_id == run_id,
                                                       StageResult.stage == result.stage)).scalar_one_or_none()
        before = None
        if existing is not None:
            old_failed = s.execute(
                select(CheckResult.name, CheckResult.subject).where(
                    CheckResult.stage_result_id == existing.id, CheckResult.required.is_(True),
                    CheckResult.passed.is_(False))).all()
            before = _verdict(existing.status, existing.reason, [f"{n}[{sub}]" if sub else n for n, sub in old_failed])
            s.delete(existing)
            s.flush()
        sr = StageResult(run_id=run.id, stage=result.stage, status=result.status, reason=result.reason,
                         summary=audit.canonical(result.summary), library=result.library,
                         library_version=result.library_version, started_at=started,
                         finished_at=started + timedelta(seconds=duration_s), duration_s=duration_s, attempt=attempt)
        s.add(sr)
        s.flush()
        s.add_all(
            CheckResult(stage_result_id=sr.id, position=i, name=c.name, subject=c.subject, value=c.value,
                        threshold=c.threshold, passed=c.passed, verdict=c.verdict, required=c.required,
                        message=c.message,
                        detail=audit.canonical(c.detail))
            for i, c in enumerate(result.checks)
        )
        if audit_unchanged or before != _verdict(result.status, result.reason, failed):
            audit.append(s, actor=SYSTEM, action="stage_recorded", entity_type="run", entity_id=run.id,
                         payload={**(audit_extra or {}), "stage": result.stage, "status": result.status,
                                  "checks": len(result.checks), "failed": failed,
                                  "replaced_previous": existing is not None, "reason": result.reason})


# ------------------------------------------------------------------------------------------- decide
def gate(s: Session, run_id: str, stages: Iterable[str]) -> tuple[dict[str, StageResult], list[str], list[str]]:
    """What the gate reads from Postgres: the run's stage results, the stage errors (a stage expected but
    without a result is an error too) and every failed required check, each as a readable reason."""
    results = {r.stage: r for r in s.execute(select(StageResult).where(StageResult.run_id == run_id)).scalars()}
    errors: list[str] = []
    for name in stages:
        r = results.get(name)
        if r is None:
            errors.append(f"{name}: no result recorded (the stage did not run)")
        elif r.status == "error":
            errors.append(f"{name}: {r.reason}")
    failed = s.execute(
        select(CheckResult, StageResult.stage)
        .join(StageResult, CheckResult.stage_result_id == StageResult.id)
        .where(StageResult.run_id == run_id, CheckResult.required.is_(True), CheckResult.passed.is_(False))
        .order_by(StageResult.stage, CheckResult.position)
    ).all()
    failures = [f"{stage}: {c.name}{f'[{c.subject}]' if c.subject else ''}: {c.message}" for c, stage in failed]
    from modelcert.policy_store import gate_failures  # the risk policy's minimum robustness evidence

    return results, errors, failures + gate_failures(s, run_id, results)


def inconclusive_checks(s: Session, run_id: str) -> list[str]:
    """Every *required* check of the run whose verdict is inconclusive (its interval straddles the bound), each as
    a readable line; what it does is the risk policy's ``inconclusive.action`` for the run's tier."""
    rows = s.execute(
        select(CheckResult, StageResult.stage)
        .join(StageResult, CheckResult.stage_result_id == StageResult.id)
        .where(StageResult.run_id == run_id, CheckResult.required.is_(True), CheckResult.verdict == "inconclusive")
        .order_by(StageResult.stage, CheckResult.position)
    ).all()
    return [f"{stage}: {c.name}{f'[{c.subject}]' if c.subject else ''}: {c.message} — inconclusive: its 95% "
            "interval straddles the bound" for c, stage in rows]


def tier_policy(s: Session, run: CertificationRun) -> Any:
    """The risk policy tier the run was judged under (``run.evidence.policy``), or None for a run without a spec
    or with a tier the policy does not have."""
    from modelcert.policy_store import policy_for_run

    tier = ((run.spec or {}).get("use_case") or {}).get("risk_tier")
    if not tier:
        return None
    return policy_for_run(s, run.evidence).tiers.get(tier)


def inconclusive_reasons(pending: list[str], tier: Any) -> tuple[list[str], str]:
    """The gate's lines for inconclusive required checks under the tier's action, and the action."""
    action = tier.inconclusive.action if tier is not None else "reject"
    if not pending:
        return [], action
    if action == "reject":
        return [f"{p}; the risk policy rejects inconclusive checks for this tier (more data may settle it)"
                for p in pending], action
    if action == "accept_risk":
        return [f"{p}; needs an explicit risk acceptance by a {tier.inconclusive.by} before a certificate is issued"
                for p in pending], action
    return [f"{p}; warning for the approvers (the risk policy lets it pass to sign-off)" for p in pending], action


def decide(engine: Engine, run_id: str) -> dict[str, Any]:
    """The gate: any stage error → ``error``; any failed required check → ``rejected``; else
    ``awaiting_signoff``. Reads only what the stages stored in Postgres.

    A run that started always ends in a final state: if deciding fails, the failure rolls back with its
    transaction, so the run is marked ``error`` with the reason in a transaction of its own, then the failure
    is re-raised (a domain error as is, anything else as a one-line ModelcertError; an unreachable database as
    is, for the orchestrator to retry)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        return _decide(engine, run_id)
    except (RunNotFound, OperationalError, InterfaceError):
        raise
    except ModelcertError as exc:
        _record_decide_error(engine, run_id, str(exc))
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then reported in one line
        reason = f"decide failed: {type(exc).__name__}: {_clip(str(exc), 300)}"
        _record_decide_error(engine, run_id, reason)
        raise ModelcertError(f"run {run_id}: {reason}") from exc


def _record_decide_error(engine: Engine, run_id: str, reason: str) -> None:
    """Mark a run whose gate failed as ``error`` (own transaction), unless it already reached a final state."""
    with transaction(engine) as s:
        run = load_run(s, run_id)
        s.refresh(run, with_for_update=True)
        if is_final(run):
            return
        reason = _clip(reason, 4000)
        lifecycle.record_error(s, run, run.status, [reason], actor=SYSTEM,
                               payload={"stage": "decide", "reason": reason})


def _decide(engine: Engine, run_id: str) -> dict[str, Any]:
    """The gate itself, in one transaction (the status and its audit event commit together or not at all).

    A run that reaches awaiting sign-off supersedes every other run of its model version still awaiting
    sign-off: two runs of one version never both wait (the model version row is locked first, so two decides
    at once serialize and the second supersedes the first)."""
    with transaction(engine) as s:
        run = load_run(s, run_id)
        if is_final(run) or not run.spec:
            return {"run_id": run_id, "status": run.status, "reasons": run.reasons}
        if run.model_version_id is not None:
            lifecycle.lock_model_version(s, run.model_version_id)
        s.refresh(run, with_for_update=True)
        if is_final(run):
            return {"run_id": run_id, "status": run.status, "reasons": run.reasons}
        _, errors, failures = gate(s, run_id, STAGE_NAMES)
        tier = tier_policy(s, run)
        pending, action = inconclusive_reasons(inconclusive_checks(s, run_id), tier)
        status, reasons = lifecycle.verdict(CERTIFICATION, errors, failures, pending, action)
        older = lifecycle.waiting_runs_to_supersede(s, run) if status == "awaiting_signoff" else []
        lifecycle.decide(s, run, status, reasons, baseline=(run.status, list(run.reasons or [])))
        for other in older:
            lifecycle.supersede_run(s, other, run)
        recorded = findings.record(s, run, tier) if status in ("rejected", "awaiting_signoff") else {}
        return {"run_id": run_id, "status": run.status, "reasons": run.reasons,
                "required_approvals": parse_spec(run.spec).required_approvals,
                "superseded": [other.id for other in older],
                "findings": {k: v for k, v in recorded.items() if v},
                "findings_to_accept": [f.id for f in findings.open_blocking(s, run_id)]}


# ------------------------------------------------------------------------------------------- sign-off
@dataclass(frozen=True)
class SignoffState:
    #: waiting | approved | declined | timeout | not_awaiting
    state: str
    run_status: str
    missing: dict[str, int]
    approvers: list[dict[str, str]]
    deadline: datetime | None
    detail: str = ""
    #: Ids of open findings that block sign-off until accepted (``modelcert.findings``): while any is open the
    #: run waits, whatever the approvals.
    findings_open: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["deadline"] = self.deadline.isoformat() if self.deadline else None
        return d


def signoff_state(engine: Engine, run_id: str, *, now: datetime | None = None) -> SignoffState:
    now = now or utcnow()
    with reader(engine) as s:
        run = load_run(s, run_id)
        signoffs = list(s.execute(select(Signoff).where(Signoff.run_id == run_id).order_by(Signoff.id)).scalars())
        approvers = [{"approver": x.approver, "role": x.role, "decision": x.decision} for x in signoffs]
        if run.status == "declined":
            return SignoffState("declined", run.status, {}, approvers, None,
                                "; ".join(x.comment for x in signoffs if x.decision == "decline"))
        if run.status == "certified":
            return SignoffState("approved", run.status, {}, approvers, None)
        if run.status == "signoff_timeout":
            return SignoffState("timeout", run.status, {}, approvers, None)
        if run.status == "superseded":
            return SignoffState("not_awaiting", run.status, {}, approvers, None,
                                "; ".join(run.reasons or []) or "run is superseded")
        if run.status != "awaiting_signoff":
            return SignoffState("not_awaiting", run.status, {}, approvers, None, f"run is {run.status}")
        spec = parse_spec(run.spec)
        deadline = (run.awaiting_since or now) + spec.signoff.timeout
        missing = quorum_missing(spec.required_approvals, signoffs, run.evidence_digest)
        blocking = findings.open_blocking(s, run_id)
        open_ids = [f.id for f in blocking]
        if not missing and not blocking:
            return SignoffState("approved", run.status, {}, approvers, deadline)
        if now >= deadline:
            why = f"no quorum within {spec.signoff.timeout}" if missing else (
                f"{len(blocking)} finding(s) not accepted within {spec.signoff.timeout}")
            return SignoffState("timeout", run.status, missing, approvers, deadline, why, open_ids)
        detail = ("findings awaiting acceptance: " + ", ".join(f"{f.id} {f.key} (by {f.accept_role})"
                                                              for f in blocking)) if blocking else ""
        return SignoffState("waiting", run.status, missing, approvers, deadline, detail, open_ids)


def mark_signoff_timeout(engine: Engine, run_id: str) -> None:
    """A timeout never approves: the run ends as ``signoff_timeout`` (nothing happens if it is no longer
    awaiting sign-off)."""
    with transaction(engine) as s:
        run = load_run(s, run_id)
        s.refresh(run, with_for_update=True)
        lifecycle.signoff_timeout(s, run)


# ------------------------------------------------------------------------------------------- promote
def recheck(s: Session, run: CertificationRun) -> None:
    """Before a certificate is issued: the run's stored stage results pass the gate again, recomputed from the
    stage and check rows (not from ``run.status``): every expected stage present, none in error or failed, no
    required check failed or left unjudged. Raises a one-line LifecycleError naming what does not hold."""
    from modelcert.errors import LifecycleError

    results, errors, failures = gate(s, run.id, STAGE_NAMES)
    problems = errors + failures
    problems += [f"{r.stage}: stored as {r.status}" for r in results.values()
                 if r.status not in ("passed", "not_applicable", "error")]  # errors are in ``errors`` already
    unjudged = s.execute(
        select(CheckResult.name, StageResult.stage).join(StageResult, CheckResult.stage_result_id == StageResult.id)
        .where(StageResult.run_id == run.id, CheckResult.required.is_(True), CheckResult.verdict.is_(None))).all()
    problems += [f"{stage}: required check {name} has no verdict" for name, stage in unjudged]
    # Inconclusive required checks: only as the run's policy allows — never under reject; under accept_risk
    # only once their finding was accepted (audited, for this evidence); any blocking finding likewise.
    tier = tier_policy(s, run)
    pending = inconclusive_checks(s, run.id)
    action = tier.inconclusive.action if tier is not None else "reject"
    if pending and action == "reject":
        problems += [f"{p} (the risk policy rejects inconclusive checks)" for p in pending]
    problems += findings.unaccepted(s, run)
    if action == "accept_risk":
        keyed = {f.key: f for f in findings.of_run(s, run.id)}
        rows = s.execute(
            select(CheckResult, StageResult.stage).join(StageResult, CheckResult.stage_result_id == StageResult.id)
            .where(StageResult.run_id == run.id, CheckResult.required.is_(True),
                   CheckResult.verdict == "inconclusive")).all()
        for c, stage in rows:
            key = findings.key_of(stage, c.name, c.subject or "")
            f = keyed.get(key)
            if f is None or f.status != "accepted" or not f.blocking:
                problems.append(f"{key} is inconclusive and its risk was not accepted")
    if problems:
        shown = "; ".join(_clip(p, 160) for p in problems[:3])
        if len(problems) > 3:
            shown += f" (+{len(problems) - 3} more)"
        raise LifecycleError(f"run {run.id} is {run.status} but its stored stage results do not pass the gate: "
                             f"{shown}; no certificate is issued")


def promote(engine: Engine, run_id: str) -> dict[str, Any]:
    """Issue the certificate once the quorum of approvals for this run's evidence exists.

    Re-checks first what the certificate rests on, whatever ``run.status`` says: the stage results pass the gate
    (:func:`recheck`) and the run's audited state history is a legal path ending in awaiting sign-off
    (``lifecycle.certify``). The model version's older valid certificates become ``superseded``."""
    with transaction(engine) as s:
        run = load_run(s, run_id)
        mv = lifecycle.lock_model_version(s, run.model_version_id) if run.model_version_id is not None else None
        # two promotes at once (task and retry): the second sees the first's certificate
        s.refresh(run, with_for_update=True)
        existing = s.execute(select(Certificate).where(Certificate.run_id == run_id)).scalar_one_or_none()
        if existing is not None:
            return certificate_dict(existing)
        if run.status != "awaiting_signoff" or mv is None:
            raise ModelcertError(f"run {run_id} is {run.status}; "
                                 "only a run awaiting sign-off with its quorum is promoted")
        recheck(s, run)
        spec = parse_spec(run.spec)
        signoffs = list(s.execute(select(Signoff).where(Signoff.run_id == run_id)).scalars())
        missing = quorum_missing(spec.required_approvals, signoffs, run.evidence_digest)
        if missing:
            raise ModelcertError(f"run {run_id} lacks approvals: {missing}")
        approvers = [{"approver": x.approver, "role": x.role} for x in signoffs
                     if x.decision == "approve" and x.evidence_digest == run.evidence_digest]
        cert = lifecycle.certify(s, run, mv, approvers=approvers, valid_for=spec.certificate.valid_for,
                                 replaced=lifecycle.valid_certificates(s, mv))
        return certificate_dict(cert, model=mv.name, version=mv.version)


def certificate_dict(cert: Certificate, *, model: str | None = None, version: str | None = None) -> dict[str, Any]:
    return {
        "certificate_id": cert.id,
        "run_id": cert.run_id,
        "model": model,
        "version": version,
        "status": cert.status,
        "valid_from": cert.valid_from.isoformat(),
        "valid_until": cert.valid_until.isoformat(),
        "evidence_digest": cert.evidence_digest,
        "approvers": cert.approvers,
    }
