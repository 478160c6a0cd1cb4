"""Run the certify_model DAG with ``dag.test()`` in a clean process, record approvals while it waits.

Usage: python dagtest_runner.py SPEC RESULTS_DB_URL AIRFLOW_HOME [approve|decline|none]
Prints one JSON line: {"dag_state", "task_states", "run": {...}} (the last line of stdout).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dags.airflow_env import prepare  # noqa: E402


def main() -> None:
    spec, results_url, home, action = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    prepare(home, results_url, MODELCERT_SIGNOFF_POLL_SECONDS="1")

    from sqlalchemy import select

    from modelcert.db.models import CertificationRun
    from modelcert.db.session import get_engine, reader
    from modelcert.governance import Identity, record_decision

    engine = get_engine(results_url)
    roles = {"model_validator": {"bob"}, "risk_officer": {"dave"}, "legal": {"erin"}}
    people = {"model_validator": "bob", "risk_officer": "dave", "legal": "erin"}

    def approver() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with reader(engine) as s:
                run = s.execute(select(CertificationRun)).scalars().first()
            if run is not None and run.status in ("rejected", "error"):
                return
            if run is not None and run.status == "awaiting_signoff":
                time.sleep(2)  # the sensor is waiting now: approve "while it waits"
                required = run.spec["signoff"]["required"]
                for i, role in enumerate(required):
                    decision = "decline" if action == "decline" and i == 0 else "approve"
                    record_decision(engine, run.id, Identity(people[role], "test"), role=role, decision=decision,
                                    comment="not convinced" if decision == "decline" else "ok", roles=roles)
                    if decision == "decline":
                        return
                return
            time.sleep(0.5)

    if action != "none":
        threading.Thread(target=approver, daemon=True).start()

    import certify_model

    dr = certify_model.dag.test(run_conf={"spec": spec})
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    with reader(engine) as s:
        run = s.execute(select(CertificationRun)).scalars().first()
        info = {"status": run.status, "reasons": run.reasons, "id": run.id} if run else None
        from modelcert.db.models import AuditEvent

        actions = [(e.action, e.payload.get("event")) for e in s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]
        if info is not None:
            info["audit"] = actions
    print(json.dumps({"dag_state": str(dr.state), "task_states": states, "run": info}))


if __name__ == "__main__":
    main()
