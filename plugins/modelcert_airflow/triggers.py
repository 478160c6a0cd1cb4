"""Trigger that waits, in the triggerer, for a run's sign-off to resolve (frees the worker slot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class SignoffTrigger(BaseTrigger):
    """Fires exactly once: when the run is approved (quorum for its evidence digest), declined, timed out,
    or no longer awaiting sign-off.

    It does not poll fast: it LISTENs on the Postgres channel ``modelcert_signoff`` (every sign-off NOTIFYs
    at commit) and re-reads the state when woken; ``poll_interval`` is only a safety net (e.g. for a
    lost notification), and it never sleeps past the sign-off deadline."""

    def __init__(self, *, run_id: str, poll_interval: float = 300.0, conn_id: str = "modelcert_db") -> None:
        super().__init__()
        self.run_id = run_id
        self.poll_interval = float(poll_interval)
        self.conn_id = conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "modelcert_airflow.triggers.SignoffTrigger",
            {"run_id": self.run_id, "poll_interval": self.poll_interval, "conn_id": self.conn_id},
        )

    def _check(self) -> dict[str, Any]:
        from modelcert.pipeline import signoff_state
        from modelcert_airflow.connection import results_engine

        return signoff_state(results_engine(self.conn_id), self.run_id).as_dict()

    def _listen(self) -> Any:
        """A dedicated psycopg2 connection LISTENing for sign-off notifications (None if that fails)."""
        import psycopg2
        from sqlalchemy.engine import make_url

        from modelcert.governance import SIGNOFF_CHANNEL
        from modelcert_airflow.connection import results_db_url

        try:
            url = make_url(results_db_url(self.conn_id))
            args = url.translate_connect_args(username="user", database="dbname")
            conn = psycopg2.connect(**args, **dict(url.query))
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {SIGNOFF_CHANNEL}")
            return conn
        except Exception as exc:  # noqa: BLE001 - falls back to polling every poll_interval
            self.log.warning("LISTEN failed (%s); falling back to polling every %.0fs", exc, self.poll_interval)
            return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        listener = await asyncio.to_thread(self._listen)

        def on_readable() -> None:
            try:
                listener.poll()
            except Exception:  # noqa: BLE001 - connection lost: the periodic check still runs
                loop.remove_reader(listener.fileno())
                return
            if any(n.payload == self.run_id for n in listener.notifies):
                woken.set()
            listener.notifies.clear()

        if listener is not None:
            loop.add_reader(listener.fileno(), on_readable)
        try:
            while True:
                try:
                    state = await asyncio.to_thread(self._check)
                except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with the message
                    yield TriggerEvent({"state": "error", "run_id": self.run_id,
                                        "detail": f"{type(exc).__name__}: {exc}"})
                    return
                if state["state"] != "waiting":
                    yield TriggerEvent({"run_id": self.run_id, **state})
                    return
                delay = self.poll_interval
                if state.get("deadline"):
                    remaining = (datetime.fromisoformat(state["deadline"]) - datetime.now(timezone.utc)).total_seconds()
                    delay = max(0.5, min(delay, remaining + 0.5))
                self.log.info("run %s waits for approvals %s; next check on notification or in %.0fs",
                              self.run_id, state["missing"], delay)
                woken.clear()
                try:
                    await asyncio.wait_for(woken.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            if listener is not None:
                try:
                    loop.remove_reader(listener.fileno())
                except Exception:  # noqa: BLE001
                    pass
                listener.close()
