"""How recertification outcomes become task states, the ops hook and the run's date."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest


def _outcome(status: str, **kw: Any) -> dict[str, Any]:
    return {"status": status, "label": "credit 2.3", "certificate_id": "c-1", "certificate_status": "valid",
            "reasons": [], "transition": None, "note": "", "current_data": "/prod/x.csv", "run_id": "r-1", **kw}


@pytest.fixture
def outcome(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from modelcert import recertify
    from modelcert_airflow import recertify_tasks

    box: dict[str, Any] = {}
    monkeypatch.setattr(recertify, "recertify", lambda *a, **k: box["out"])
    monkeypatch.setattr(recertify_tasks, "results_engine", lambda: None)
    return box


def _run(**kw: Any) -> Any:
    from modelcert_airflow import recertify_tasks

    return recertify_tasks.recertify_one({"certificate_id": "c-1"}, dag_id="d", run_id="r", ds="2026-11-30",
                                         triggered_by=None, **kw)


def test_outcomes_map_to_task_states(outcome: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    outcome["out"] = _outcome("passed", transition="checked")
    assert _run()["status"] == "passed"
    outcome["out"] = _outcome("failed", transition="suspended", certificate_status="suspended",
                              reasons=["drift: drifted_share: 9 of 18 column(s) drifted"])
    with (caplog.at_level(logging.WARNING, logger="modelcert.notify"),
          pytest.raises(AirflowFailException, match="(?s)FAILED on 2026-11-30.*suspended.*drifted_share")):
        _run()
    assert any("certificate_suspended" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    outcome["out"] = _outcome("failed", certificate_status="suspended", reasons=["x"])  # re-run: no second alert
    with caplog.at_level(logging.WARNING, logger="modelcert.notify"), pytest.raises(AirflowFailException):
        _run()
    assert not any("certificate_suspended" in r.getMessage() for r in caplog.records)
    outcome["out"] = _outcome("error", reasons=["recertification.current_data: no current data"])
    with (caplog.at_level(logging.WARNING, logger="modelcert.notify"),
          pytest.raises(AirflowFailException, match="(?s)ERROR on 2026-11-30.*no current data")):
        _run()
    assert any("recertification_error" in r.getMessage() for r in caplog.records)
    for status in ("skipped", "not_configured", "expired"):
        outcome["out"] = _outcome(status, note="why")
        with pytest.raises(AirflowSkipException, match="why"):
            _run()


def test_run_ds() -> None:
    from modelcert_airflow.recertify_tasks import run_ds

    day = datetime(2026, 11, 29, tzinfo=UTC)
    assert run_ds(SimpleNamespace(logical_date=day, run_after=None), {}) == "2026-11-29"
    assert run_ds(SimpleNamespace(logical_date=None, run_after=day), {"ds": None}) == "2026-11-29"
    assert run_ds(SimpleNamespace(logical_date=day, run_after=day), {"ds": "2026-01-02"}) == "2026-01-02"


def test_schedule_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert_airflow.recertify_tasks import schedule_from_env

    monkeypatch.delenv("MODELCERT_RECERTIFY_SCHEDULE", raising=False)
    assert schedule_from_env() == "@daily"
    monkeypatch.setenv("MODELCERT_RECERTIFY_SCHEDULE", "0 4 * * 1-5")
    assert schedule_from_env() == "0 4 * * 1-5"
    monkeypatch.setenv("MODELCERT_RECERTIFY_SCHEDULE", "none")
    assert schedule_from_env() is None
