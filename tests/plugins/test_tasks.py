"""Task callables under results-database faults: a retried register never duplicates a run, and a stage that
fails without storing a result leaves its real cause in the run's reasons (not "the stage did not run")."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

pytestmark = pytest.mark.store


def _refused() -> Exception:
    """A real connection-refused error, as during an outage."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        with create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/x").connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - the error is the fixture
        return exc
    raise AssertionError("connecting to a closed port succeeded")


@pytest.fixture
def tasks(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from modelcert_airflow import tasks

    monkeypatch.setattr(tasks, "results_engine", lambda: engine)
    monkeypatch.setenv("MODELCERT_DB_RETRY_SECONDS", "0")
    return tasks


def test_register_retried_after_an_outage_records_one_run(tasks: Any, engine: Any, spec_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert import pipeline
    from modelcert.db.models import CertificationRun

    monkeypatch.setenv("MODELCERT_DB_RETRY_SECONDS", "30")
    real = pipeline.register
    calls: list[int] = []

    def flaky(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise _refused()
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "register", flaky)
    first = tasks.register(str(spec_path), "certify_model", "manual__1", "carol")
    again = tasks.register(str(spec_path), "certify_model", "manual__1", "carol")  # an Airflow retry of the task
    assert len(calls) == 3 and first["run_id"] == again["run_id"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CertificationRun)).scalar_one() == 1


def _ti(xcoms: dict[str, Any], states: dict[str, str]) -> Any:
    return SimpleNamespace(
        xcom_pull=lambda task_ids, key: xcoms.get(task_ids) if key == "modelcert_stage_error" else None,
        get_task_states=lambda dag_id, task_ids, run_ids: {run_ids[0]: {t: states.get(t) for t in task_ids}},
    )


def test_decide_names_the_real_cause_of_a_stage_that_stored_nothing(tasks: Any, engine: Any, spec_path: Path,
                                                                   verdicts: dict[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from modelcert import pipeline
    from modelcert.db.models import CertificationRun, StageResult
    from modelcert.db.session import reader

    reg = pipeline.register(engine, spec_path, run_key="certify_model/manual__2", triggered_by="carol")
    for name in ("data_quality", "robustness", "fairness", "drift"):
        pipeline.run_stage(engine, reg.run_id, name)
    # performance: the results DB is down when the stage saves; compliance: its process was killed (no XCom).
    real = pipeline.run_stage
    monkeypatch.setattr(pipeline, "run_stage", lambda e, run_id, name, **k: (_ for _ in ()).throw(_refused())
                        if name == "performance" else real(e, run_id, name, **k))
    reported: list[dict[str, Any]] = []
    with pytest.raises(Exception) as info:
        tasks.stage("performance", reg.run_id, attempt=4, max_tries=3, report_error=reported.append)
    assert type(info.value).__name__ == "OperationalError"  # not a verdict: Airflow's retries apply
    assert reported and reported[0]["try"] == 4 and reported[0]["error"].startswith("OperationalError: ")

    ti = _ti({"stages.performance": reported[-1]}, {"stages.compliance": "failed"})
    failures = tasks.stage_failures(ti, "certify_model", "manual__2")
    assert set(failures) == {"performance", "compliance"}
    decision = tasks.decide(reg.run_id, failures)  # a verdict is data; the `error` task is what fails
    assert decision["status"] == "error" and tasks.verdict_task(decision) == "error"
    with pytest.raises(AirflowFailException, match="ERROR"):
        tasks.announce(decision, {"model": "m", "version": "1"})
    assert tasks.decide(reg.run_id, failures)["status"] == "error"  # a re-run of decide records nothing twice
    with reader(engine) as s:
        run = s.get(CertificationRun, reg.run_id)
        stages = s.execute(select(StageResult.stage, StageResult.status).where(StageResult.run_id == reg.run_id)).all()
    assert run.status == "error"
    assert sorted(stages) == sorted([(n, "passed") for n in ("data_quality", "robustness", "fairness", "drift")]
                                    + [("performance", "error"), ("compliance", "error")])
    perf = next(r for r in run.reasons if r.startswith("performance: "))
    assert "failed after 4 tries" in perf and "OperationalError: " in perf and "did not run" not in perf
    assert any(r.startswith("compliance: ") and "killed" in r for r in run.reasons), run.reasons


def test_a_stored_stage_result_is_never_overwritten_by_a_reported_error(tasks: Any, engine: Any, spec_path: Path,
                                                                       verdicts: dict[str, str]) -> None:
    from modelcert import pipeline
    from modelcert.db.models import StageResult
    from modelcert.db.session import reader
    from modelcert.stages import STAGE_NAMES

    reg = pipeline.register(engine, spec_path, run_key="certify_model/manual__3", triggered_by="carol")
    for name in STAGE_NAMES:
        pipeline.run_stage(engine, reg.run_id, name)
    # An earlier try failed (its XCom says so) but the retry stored the result: the result stands.
    recorded = tasks.record_stage_failures(reg.run_id, {"drift": "the stage task failed after 1 try: X"})
    assert recorded == []
    assert tasks.decide(reg.run_id, {})["status"] == "awaiting_signoff"
    with reader(engine) as s:
        assert s.execute(select(StageResult.status).where(StageResult.run_id == reg.run_id,
                                                          StageResult.stage == "drift")).scalar_one() == "passed"
