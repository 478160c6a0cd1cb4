"""Task callables: each calls one modelcert library function and maps its outcome to a task state.

passed → success · failed/rejected/error → failed (AirflowFailException: no retry, the verdict is final)
· not_applicable → skipped. Unexpected exceptions propagate, so Airflow's retries apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from modelcert_airflow.connection import results_engine

#: Where shipped specs live: <root>/include/specs next to <root>/dags and <root>/plugins.
SPEC_DIR = Path(__file__).resolve().parents[2] / "include" / "specs"


def resolve_spec(value: str) -> Path:
    """A shipped spec by file name, or a path (absolute, or relative to the specs folder)."""
    p = Path(value)
    if not p.is_absolute():
        p = SPEC_DIR / p
    return p


def register(spec: str, dag_id: str, run_id: str, triggered_by: str | None) -> dict[str, Any]:
    from modelcert import pipeline
    from modelcert.errors import ModelcertError

    try:
        reg = pipeline.register(results_engine(), resolve_spec(spec), run_key=f"{dag_id}/{run_id}",
                                triggered_by=triggered_by, dag_id=dag_id, airflow_run_id=run_id)
    except ModelcertError as exc:
        raise AirflowFailException(f"registration failed, run recorded as error: {exc}") from exc
    return reg.as_dict()


def stage(stage_name: str, run_id: str, attempt: int = 1) -> dict[str, Any]:
    from modelcert import pipeline

    summary = pipeline.run_stage(results_engine(), run_id, stage_name, attempt=attempt)
    if summary["status"] == "not_applicable":
        raise AirflowSkipException(f"{stage_name} not applicable: {summary['reason']}")
    if summary["status"] == "error":
        raise AirflowFailException(f"{stage_name} error: {summary['reason']}")
    if summary["status"] == "failed":
        raise AirflowFailException(f"{stage_name} failed checks: {', '.join(summary['failed'])}")
    return summary


def decide(run_id: str) -> dict[str, Any]:
    from modelcert import pipeline

    decision = pipeline.decide(results_engine(), run_id)
    if decision["status"] in ("rejected", "error"):
        reasons = "\n  - ".join(decision["reasons"])
        raise AirflowFailException(f"run {run_id} {decision['status'].upper()}:\n  - {reasons}")
    return decision


def promote(run_id: str) -> dict[str, Any]:
    from modelcert import pipeline

    return pipeline.promote(results_engine(), run_id)
