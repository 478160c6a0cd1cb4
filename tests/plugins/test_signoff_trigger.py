"""The sign-off trigger against a real PostgreSQL: exactly one event, woken by NOTIFY (not by polling)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelcert.governance import Identity, record_decision
from tests.lifecycle import ROLES, run_all

pytestmark = pytest.mark.store


async def _events(trigger: Any, limit: float) -> tuple[list[Any], float]:
    start = time.monotonic()
    events = []
    async def consume() -> None:
        async for ev in trigger.run():
            events.append(ev)
    await asyncio.wait_for(consume(), timeout=limit)
    return events, time.monotonic() - start


def test_approvals_wake_the_trigger_without_polling(engine: Any, db_url: str, spec_path: Path,
                                                    verdicts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert_airflow.triggers import SignoffTrigger

    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    run_id = run_all(engine, spec_path)

    def approve_later() -> None:
        time.sleep(1.5)
        record_decision(engine, run_id, Identity("bob", "t"), role="model_validator", decision="approve", roles=ROLES)
        time.sleep(0.5)
        record_decision(engine, run_id, Identity("dave", "t"), role="risk_officer", decision="approve", roles=ROLES)

    threading.Thread(target=approve_later, daemon=True).start()
    trigger = SignoffTrigger(run_id=run_id, poll_interval=600)
    events, seconds = asyncio.run(_events(trigger, limit=30))
    assert len(events) == 1
    assert events[0].payload["state"] == "approved"
    assert seconds < 10, f"took {seconds:.1f}s: the trigger polled instead of listening"


def test_decline_ends_the_wait(engine: Any, db_url: str, spec_path: Path, verdicts: dict[str, str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert_airflow.triggers import SignoffTrigger

    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    run_id = run_all(engine, spec_path)
    threading.Thread(target=lambda: (time.sleep(1), record_decision(
        engine, run_id, Identity("dave", "t"), role="risk_officer", decision="decline", comment="no", roles=ROLES)),
        daemon=True).start()
    events, _ = asyncio.run(_events(SignoffTrigger(run_id=run_id, poll_interval=600), limit=30))
    assert [e.payload["state"] for e in events] == ["declined"]


def test_serialize_round_trip() -> None:
    from modelcert_airflow.triggers import SignoffTrigger

    path, kwargs = SignoffTrigger(run_id="r1", poll_interval=12, conn_id="c").serialize()
    assert path == "modelcert_airflow.triggers.SignoffTrigger"
    again = SignoffTrigger(**kwargs)
    assert (again.run_id, again.poll_interval, again.conn_id) == ("r1", 12.0, "c")


def test_timeout_fires_and_never_approves(engine: Any, db_url: str, tmp_path: Path, verdicts: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The trigger wakes itself at the spec's sign-off deadline (not at the 600 s poll) with a timeout event."""
    import pandas as pd

    from modelcert import pipeline
    from modelcert_airflow.triggers import SignoffTrigger
    from tests.conftest import write_synthetic

    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    df = pd.DataFrame({"x": range(40), "sex": ["m", "f"] * 20, "y": [0, 1, 1, 0] * 10, "pred": [1, 0] * 20})
    path, _ = write_synthetic(tmp_path, {"test": df}, {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}},
        "signoff": {"required": {"model_validator": 1}, "timeout": "2s"},
    })
    run_id = run_all(engine, path, key="timeout")
    events, seconds = asyncio.run(_events(SignoffTrigger(run_id=run_id, poll_interval=600), limit=30))
    assert [e.payload["state"] for e in events] == ["timeout"]
    assert seconds < 10
    pipeline.mark_signoff_timeout(engine, run_id)
    assert pipeline.signoff_state(engine, run_id).state == "timeout"
    with pytest.raises(Exception, match="signoff_timeout"):
        pipeline.promote(engine, run_id)
