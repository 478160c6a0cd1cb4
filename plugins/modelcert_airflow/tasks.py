"""Task callables: each calls one modelcert library function and maps its outcome to a task state.

A verdict is not a crash. A stage whose checks ran ends ``success`` whatever they found (its verdict and the
failed checks are in its log and its XCom); ``not_applicable`` → skipped; a stage that could not judge
(status ``error``) or a refused registration → failed (AirflowFailException: no retry, final). ``decide``
returns the gate's verdict and branches to the one terminal task named for it (:data:`VERDICT_TASKS`):
``awaiting_signoff`` and ``rejected`` succeed (the verdict is data, logged in one line per reason), ``error``
fails. Unexpected exceptions (a database outage, a bug) propagate, so Airflow's retries apply, and the task
turns red: red in the grid always means something broke, never that a model failed its checks.

Results-database outages: every call runs under :func:`modelcert.db.session.retry_transient` (a connection
failure repeats the idempotent unit of work with backoff for ``MODELCERT_DB_RETRY_SECONDS``, default 60 s), and
the DAG's task retries cover a longer outage. A stage task that still fails leaves its error in XCom
(:data:`STAGE_ERROR_KEY`; XCom goes to Airflow's metadata DB, not the results DB), and :func:`decide` records
that error as the stage's result, so the run's reason is the real cause, not "the stage did not run".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from modelcert_airflow.connection import results_engine

#: Where shipped specs live: <root>/include/specs next to <root>/dags and <root>/plugins.
SPEC_DIR = Path(__file__).resolve().parents[2] / "include" / "specs"
#: XCom key under which a stage task leaves why it failed (``{"stage", "try", "max_tries", "error"}``).
STAGE_ERROR_KEY = "modelcert_stage_error"
#: The stage tasks live in this task group of ``certify_model``.
STAGE_GROUP = "stages"
#: The DAG that waits for sign-off and promotes, one DAG run per certification run awaiting sign-off.
SIGNOFF_DAG_ID = "signoff_model"
#: Its one param: the modelcert run id (conf ``{"modelcert_run_id": ...}``).
SIGNOFF_PARAM = "modelcert_run_id"
#: certify_model's terminal task per gate verdict; ``decide`` follows exactly one of them.
VERDICT_TASKS: dict[str, str] = {"awaiting_signoff": "awaiting_signoff", "rejected": "rejected", "error": "error"}
#: XCom key under which ``decide`` leaves the decision (``{"run_id", "status", "reasons", ...}``).
DECISION_KEY = "modelcert_decision"

log = logging.getLogger("modelcert.airflow")


#: Task retries for infrastructure faults (a verdict raises AirflowFailException and is never retried): with
#: jitter Airflow waits 20-40 s, 40-80 s, then 80-120 s, so the retries alone span >= 140 s of outage, and each
#: try also rides out MODELCERT_DB_RETRY_SECONDS (60 s) in-process. The results-DB outage found by the probe
#: lasted 28 s.
RETRY_POLICY: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=2),
}


def min_retry_window(policy: dict[str, Any] = RETRY_POLICY) -> float:
    """The least time (seconds) Airflow waits across all retries of a task under ``policy`` (jitter only adds)."""
    delay = policy["retry_delay"].total_seconds()
    factor = float(policy.get("retry_exponential_backoff") or 1.0)
    cap = policy["max_retry_delay"].total_seconds() if policy.get("max_retry_delay") else float("inf")
    return sum(min(delay * factor ** k, cap) for k in range(int(policy["retries"])))


def signoff_run_id(modelcert_run_id: str) -> str:
    """The sign-off DAG run id of a certification run: deterministic, so re-triggering finds the same DAG run."""
    return f"signoff__{modelcert_run_id}"


def resolve_spec(value: str) -> Path:
    """A shipped spec by file name, or a path (absolute, or relative to the specs folder)."""
    p = Path(value)
    if not p.is_absolute():
        p = SPEC_DIR / p
    return p


def register(spec: str, dag_id: str, run_id: str, triggered_by: str | None) -> dict[str, Any]:
    """Register (or, on a retry or re-run, reuse by run key ``dag_id/run_id``) the run: never a duplicate."""
    from modelcert import pipeline
    from modelcert.db.session import retry_transient
    from modelcert.errors import ModelcertError

    try:
        reg = retry_transient(
            lambda: pipeline.register(results_engine(), resolve_spec(spec), run_key=f"{dag_id}/{run_id}",
                                      triggered_by=triggered_by, dag_id=dag_id, airflow_run_id=run_id),
            what="register")
    except ModelcertError as exc:
        raise AirflowFailException(f"registration failed, run recorded as error: {exc}") from exc
    return reg.as_dict()


def stage(stage_name: str, run_id: str, attempt: int = 1, *, max_tries: int | None = None,
          report_error: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run one stage. If it raises (infrastructure, not a verdict), ``report_error`` gets why before the task
    fails, so the gate can name the cause even when the results database could not take it."""
    from modelcert import pipeline
    from modelcert.db.session import describe_error, retry_transient
    from modelcert.errors import ModelcertError

    try:
        summary = retry_transient(lambda: pipeline.run_stage(results_engine(), run_id, stage_name, attempt=attempt),
                                  what=f"stage {stage_name}")
    except ModelcertError as exc:
        if report_error is not None:
            report_error({"stage": stage_name, "try": attempt, "max_tries": max_tries, "error": str(exc)})
        raise AirflowFailException(f"{stage_name} cannot run: {exc}") from exc
    except Exception as exc:
        if report_error is not None:
            report_error({"stage": stage_name, "try": attempt, "max_tries": max_tries, "error": describe_error(exc)})
        raise
    if summary["status"] == "not_applicable":
        raise AirflowSkipException(f"{stage_name} not applicable: {summary['reason']}")
    if summary["status"] == "error":
        raise AirflowFailException(f"{stage_name} error: {summary['reason']}")
    if summary["status"] == "failed":  # a verdict, not a crash: the task succeeds, decide rejects the run
        log.warning("%s FAILED %d check(s): %s", stage_name, len(summary["failed"]), ", ".join(summary["failed"]))
    else:
        log.info("%s %s: %d check(s)", stage_name, summary["status"].upper(), summary["checks"])
    return summary


def registered_run_id(ti: Any) -> str | None:
    """The run ``register`` recorded, or None: ``decide`` runs even when registration failed (trigger rule
    all_done); then there is nothing to decide (register stored the run as ``error``) and retrying cannot help."""
    reg = ti.xcom_pull(task_ids="register")
    if not isinstance(reg, dict) or not reg.get("run_id"):
        return None
    return str(reg["run_id"])


def stage_failures(ti: Any, dag_id: str, airflow_run_id: str) -> dict[str, str]:
    """Why each stage task that failed did so, read from Airflow (XCom, else the task's final state): what
    :func:`decide` records for a stage that left no result in the results database."""
    from modelcert.stages import STAGE_NAMES

    out: dict[str, str] = {}
    for name in STAGE_NAMES:
        info = ti.xcom_pull(task_ids=f"{STAGE_GROUP}.{name}", key=STAGE_ERROR_KEY)
        if isinstance(info, dict) and info.get("error"):
            tries = info.get("try") or 1
            out[name] = (f"the stage task failed after {tries} {'try' if tries == 1 else 'tries'} without recording "
                         f"a result: {info['error']}")
    missing = [n for n in STAGE_NAMES if n not in out]
    if missing:
        states = _task_states(ti, dag_id, airflow_run_id, [f"{STAGE_GROUP}.{n}" for n in missing])
        for name in missing:
            state = states.get(f"{STAGE_GROUP}.{name}")
            if state in ("failed", "upstream_failed", "removed"):
                out[name] = (f"the stage task ended {state} without recording a result or an error (e.g. its "
                             "process was killed); see its log in Airflow")
    return out


def _task_states(ti: Any, dag_id: str, airflow_run_id: str, task_ids: list[str]) -> dict[str, str | None]:
    try:
        states = ti.get_task_states(dag_id=dag_id, task_ids=task_ids, run_ids=[airflow_run_id])
    except Exception:  # noqa: BLE001 - only costs the precise reason; the gate still errors the run
        return {}
    per_run = states.get(airflow_run_id, {}) if isinstance(states, dict) else {}
    return {k: (str(v) if v is not None else None) for k, v in per_run.items()}


def record_stage_failures(run_id: str, failures: dict[str, str]) -> list[str]:
    """Store each failure as the stage's ``error`` result, but only where the stage stored nothing itself and
    the run can still change. Returns the stages recorded."""
    from sqlalchemy import select

    from modelcert import pipeline
    from modelcert.db.models import StageResult
    from modelcert.db.session import reader
    from modelcert.stages.base import StageOutcome

    if not failures:
        return []
    engine = results_engine()
    with reader(engine) as s:
        run = pipeline.load_run(s, run_id)
        if run.status in pipeline.TERMINAL or not run.spec:
            return []
        have = set(s.execute(select(StageResult.stage).where(StageResult.run_id == run_id)).scalars())
    recorded = []
    for name, reason in failures.items():
        if name in have:
            continue
        now = pipeline.utcnow()
        pipeline.save_stage(engine, run_id, StageOutcome(stage=name, status="error", reason=reason),
                            started=now, duration_s=0.0, audit_extra={"recorded_by": "decide"})
        recorded.append(name)
    return recorded


def decide(run_id: str | None, stage_errors: dict[str, str] | None = None) -> dict[str, Any]:
    """The gate's verdict as data (``status`` is one of :data:`VERDICT_TASKS`); never raises for a verdict.

    A gate that fails on the run's own data is recorded as ``error`` by the library and returned as such; a
    database outage still raises (retried by Airflow)."""
    from modelcert import pipeline
    from modelcert.db.session import retry_transient
    from modelcert.errors import ModelcertError

    if run_id is None:
        return {"run_id": None, "status": "error",
                "reasons": ["registration failed (see the register task); the run is recorded as error"]}

    def work() -> dict[str, Any]:
        record_stage_failures(run_id, stage_errors or {})
        return pipeline.decide(results_engine(), run_id)

    try:
        decision = retry_transient(work, what="decide")
    except ModelcertError as exc:  # recorded as the run's error by pipeline.decide
        return {"run_id": run_id, "status": "error", "reasons": [str(exc)]}
    if decision["status"] not in VERDICT_TASKS:  # e.g. already certified when a finished DAG run is cleared
        return {**decision, "status": "error",
                "reasons": [f"run {run_id} is already {decision['status']}; start a new certification run"]}
    return decision


def verdict_task(decision: dict[str, Any]) -> str:
    """The terminal task ``decide`` branches to."""
    return VERDICT_TASKS[decision["status"]]


def announce(decision: dict[str, Any], model: dict[str, Any] | None = None) -> dict[str, Any]:
    """Log the verdict in one line per reason (what the terminal task's log shows); ``error`` fails the task."""
    status, run_id = decision["status"], decision.get("run_id")
    who = f"{model['model']} {model['version']}" if model and model.get("model") else "the spec"
    reasons = list(decision.get("reasons") or [])
    headline = f"{who}: {status.upper().replace('_', ' ')} (modelcert run {run_id or '-'})"
    if status == "error":
        raise AirflowFailException(headline + ": " + "; ".join(reasons))
    log.log(logging.WARNING if status == "rejected" else logging.INFO, "%s", headline)
    for reason in reasons:
        log.log(logging.WARNING, "  - %s", reason)
    return decision


def announce_decision(ti: Any) -> dict[str, Any]:
    """:func:`announce` the decision ``decide`` left in XCom, naming the model ``register`` recorded."""
    return announce(ti.xcom_pull(task_ids="decide", key=DECISION_KEY), ti.xcom_pull(task_ids="register"))


def signoff_note(reg: dict[str, Any] | None, airflow_run_id: str) -> str:
    """The note of the sign-off DAG run: which model and version waits, and the certification run it came from."""
    reg = reg or {}
    return (f"{reg.get('model', '?')} {reg.get('version', '?')} awaits sign-off "
            f"(modelcert run {reg.get('run_id', '?')}, certify_model run {airflow_run_id})")


def promote(run_id: str) -> dict[str, Any]:
    from modelcert import pipeline
    from modelcert.db.session import retry_transient
    from modelcert.dossier.certified import record_certified

    engine = results_engine()
    cert = retry_transient(lambda: pipeline.promote(engine, run_id), what="promote")
    # After the certificate's transaction: the model card and the report, recorded frozen (never fails the task).
    return {**cert, "documents": record_certified(engine, run_id)}
