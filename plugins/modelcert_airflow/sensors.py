"""The sign-off sensor: blocks promotion until the spec's required approvals for this run exist.

Deferrable by default (the wait happens in the triggerer, no worker slot held); with
``deferrable=False`` it pokes in ``reschedule`` mode, which also frees the slot between pokes.
A decline fails the task; so does the spec's sign-off timeout (a timeout never approves).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException


class SignoffSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("run_id",)
    ui_color = "#fff3bf"

    def __init__(self, *, run_id: str, conn_id: str = "modelcert_db", deferrable: bool = True,
                 poll_interval: float = 30.0, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", poll_interval)
        # The spec's sign-off timeout governs; this is only a backstop far beyond any spec.
        kwargs.setdefault("timeout", timedelta(days=400).total_seconds())
        super().__init__(**kwargs)
        self.run_id = run_id
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    def _state(self) -> dict[str, Any]:
        from modelcert.pipeline import signoff_state
        from modelcert_airflow.connection import results_engine

        return signoff_state(results_engine(self.conn_id), self.run_id).as_dict()

    def execute(self, context: Any) -> Any:
        state = self._state()
        if state["state"] != "waiting":
            return self._finish(state)
        if not self.deferrable:
            return super().execute(context)
        from modelcert_airflow.triggers import SignoffTrigger

        self.log.info("run %s waits for approvals %s%s (deadline %s); deferring", self.run_id, state["missing"],
                      f" and {state['detail']}" if state.get("findings_open") else "", state["deadline"])
        self.defer(trigger=SignoffTrigger(run_id=self.run_id, poll_interval=self.poll_interval, conn_id=self.conn_id),
                   method_name="execute_complete")

    def poke(self, context: Any) -> bool:
        state = self._state()
        if state["state"] == "waiting":
            self.log.info("run %s still needs %s%s", self.run_id, state["missing"],
                          f" and {state['detail']}" if state.get("findings_open") else "")
            return False
        self._finish(state)
        return True

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        if not event:
            raise AirflowFailException(f"sign-off trigger for run {self.run_id} ended without an event")
        return self._finish(event)

    def _finish(self, state: dict[str, Any]) -> dict[str, Any]:
        kind = state["state"]
        if kind == "approved":
            self.log.info("run %s approved by %s", self.run_id, state.get("approvers"))
            return {"run_id": self.run_id, "approvers": state.get("approvers", [])}
        if kind == "timeout":
            from modelcert.pipeline import mark_signoff_timeout
            from modelcert_airflow.connection import results_engine

            mark_signoff_timeout(results_engine(self.conn_id), self.run_id)
            raise AirflowFailException(f"run {self.run_id}: sign-off timed out (missing {state.get('missing')}); "
                                       "a timeout never approves")
        if kind == "declined":
            raise AirflowFailException(f"run {self.run_id} declined: {state.get('detail')}")
        if kind == "error" and state.get("retryable"):
            # The results database stayed unreachable longer than the trigger's outage window: an infrastructure
            # fault, not a verdict, so the task's retries apply (a retry defers again and re-reads the state).
            raise AirflowException(f"run {self.run_id}: sign-off state unavailable: {state.get('detail')}")
        raise AirflowFailException(f"run {self.run_id} cannot be signed off: {state.get('detail') or kind}")
