"""Trigger that waits, in the triggerer, for a run's sign-off to resolve (frees the worker slot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class SignoffTrigger(BaseTrigger):
    """Fires exactly once: when the run is approved (quorum for its evidence digest), declined, timed out,
    or no longer awaiting sign-off. Polls Postgres every ``poll_interval`` seconds, but never sleeps past
    the sign-off deadline."""

    def __init__(self, *, run_id: str, poll_interval: float = 30.0, conn_id: str = "modelcert_db") -> None:
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

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                state = await asyncio.to_thread(self._check)
            except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with the message
                yield TriggerEvent({"state": "error", "run_id": self.run_id, "detail": f"{type(exc).__name__}: {exc}"})
                return
            if state["state"] != "waiting":
                yield TriggerEvent({"run_id": self.run_id, **state})
                return
            delay = self.poll_interval
            if state.get("deadline"):
                remaining = (datetime.fromisoformat(state["deadline"]) - datetime.now(timezone.utc)).total_seconds()
                delay = max(0.5, min(delay, remaining + 0.5))
            self.log.info("run %s waiting for approvals %s; next check in %.0fs", self.run_id, state["missing"], delay)
            await asyncio.sleep(delay)
