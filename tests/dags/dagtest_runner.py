"""Run the certify_model DAG with ``dag.test()`` in a clean process; when it hands the run to sign-off, run the
signoff_model DAG the way request_signoff triggered it (same conf) and record approvals while it waits.

Usage: python dagtest_runner.py SPEC RESULTS_DB_URL AIRFLOW_HOME [approve|decline|none]
Prints one JSON line (the last line of stdout): {"dag_state", "task_states", "triggered": {run_id, conf} or
null, "signoff": {"dag_state", "task_states"} or null, "run": {...}}.
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

    from modelcert import findings
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import get_engine, reader
    from modelcert.governance import Identity, accept_findings, record_decision

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
                if action == "approve":
                    # Inconclusive checks under the high tier block sign-off until the policy's role accepts them.
                    with reader(engine) as s:
                        blocking = sorted({f.accept_role for f in findings.open_blocking(s, run.id)})
                    for role in blocking:
                        accept_findings(engine, run.id, Identity(people[role], "test"), role=role, roles=roles,
                                        reason="the interval straddles the bound on the demo's small test set",
                                        evidence_digest=run.evidence_digest)
                for i, role in enumerate(required):
                    decision = "decline" if action == "decline" and i == 0 else "approve"
                    record_decision(engine, run.id, Identity(people[role], "test"), role=role, decision=decision,
                                    comment="not convinced" if decision == "decline" else "ok", roles=roles,
                                    evidence_digest=run.evidence_digest)
                    if decision == "decline":
                        return
                return
            time.sleep(0.5)

    if action != "none":
        threading.Thread(target=approver, daemon=True).start()

    import certify_model
    import signoff_model

    dr = certify_model.dag.test(run_conf={"spec": spec})
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    with reader(engine) as s:
        first = s.execute(select(CertificationRun)).scalars().first()
    triggered = _triggered_signoff_run(first.id) if first is not None else None
    signoff = None
    if triggered is not None:
        sdr = signoff_model.dag.test(run_conf=triggered["conf"])
        signoff = {"dag_state": str(sdr.state), "task_states": {ti.task_id: str(ti.state) for ti in sdr.get_task_instances()}}
    with reader(engine) as s:
        run = s.execute(select(CertificationRun)).scalars().first()
        info = {"status": run.status, "reasons": run.reasons, "id": run.id} if run else None
        from modelcert.db.models import AuditEvent

        actions = [(e.action, e.payload.get("event")) for e in s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]
        if info is not None:
            info["audit"] = actions
    print(json.dumps({"dag_state": str(dr.state), "task_states": states, "triggered": triggered, "signoff": signoff,
                      "run": info}))


def _triggered_signoff_run(modelcert_run_id: str) -> dict | None:
    """The signoff_model DAG run(s) that certify_model's request_signoff created for this certification run."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = [r for r in session.query(DagRun).filter(DagRun.dag_id == "signoff_model").all()
                if (r.conf or {}).get("modelcert_run_id") == modelcert_run_id]
        return {"run_id": runs[0].run_id, "conf": dict(runs[0].conf or {}), "count": len(runs)} if runs else None


if __name__ == "__main__":
    main()
