"""
### Certify a model for high-risk use

Give a certification spec (a shipped one from `include/specs`, or a path). The run then:

1. **register** validates the spec, hashes model, data and spec into the *evidence digest*, records the run;
2. **stages** (one task each, in parallel): data quality (Great Expectations), performance (scikit-learn),
   robustness (IBM ART), fairness (IBM AIF360), drift (Evidently), compliance (policy checks);
   red = failed checks or error, pink = not applicable (the reason is in the log and in Postgres);
3. **decide** rejects (any failed required check) or errors (any stage error) — the task and the run turn
   red and list the reasons — or moves the run to *awaiting sign-off*;
4. **await_signoff** waits in the triggerer (no worker slot) for the spec's required approvals
   (`modelcert approve RUN --approver NAME --role ROLE`); a decline or the spec's timeout fails it;
5. **promote** issues the certificate and emits the `modelcert://certificates` asset event.

Every number, threshold and decision is stored in the modelcert results database, not in Airflow.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, Param, TaskGroup, task

from modelcert.stages import STAGE_NAMES
from modelcert_airflow import tasks as mc
from modelcert_airflow.notifiers import CertificationNotifier
from modelcert_airflow.sensors import SignoffSensor

CERTIFICATES = Asset("modelcert://certificates")
SHIPPED_SPECS = sorted(p.name for p in mc.SPEC_DIR.glob("*.yaml"))

with DAG(
    dag_id="certify_model",
    dag_display_name="Certify a model",
    description="Spec → six checks → gate → sign-off → certificate",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    tags=["modelcert", "certification"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=15), "owner": "modelcert"},
    params={
        "spec": Param(
            SHIPPED_SPECS[0] if SHIPPED_SPECS else "",
            type="string",
            title="Certification spec",
            description="A shipped spec (pick one) or a path to a spec YAML (absolute, or relative to include/specs).",
            examples=SHIPPED_SPECS,
            pattern=r"^\S.*\.ya?ml$",
            minLength=6,
        ),
    },
    render_template_as_native_obj=True,
) as dag:

    @task(retries=0)
    def register(params: dict[str, Any] | None = None, dag_run: Any = None) -> dict[str, Any]:
        assert params is not None and dag_run is not None
        return mc.register(params["spec"], dag_run.dag_id, dag_run.run_id,
                           getattr(dag_run, "triggering_user_name", None))

    registered = register()

    with TaskGroup("stages", tooltip="One task per check stage; each stores its results in Postgres") as stages:
        for name in STAGE_NAMES:

            @task(task_id=name)
            def run_stage(reg: dict[str, Any], stage_name: str = name, ti: Any = None) -> dict[str, Any]:
                return mc.stage(stage_name, reg["run_id"], attempt=getattr(ti, "try_number", 1))

            run_stage(registered)

    @task(trigger_rule="all_done", retries=0,
          on_success_callback=CertificationNotifier("awaiting_signoff"),
          on_failure_callback=CertificationNotifier("decision"))
    def decide(reg: dict[str, Any]) -> dict[str, Any]:
        return mc.decide(reg["run_id"])

    decision = decide(registered)

    await_signoff = SignoffSensor(
        task_id="await_signoff",
        run_id="{{ ti.xcom_pull(task_ids='register')['run_id'] }}",
        poll_interval=float(os.environ.get("MODELCERT_SIGNOFF_POLL_SECONDS", "300")),
        retries=0,
        on_failure_callback=CertificationNotifier("signoff_failed"),
    )

    @task(outlets=[CERTIFICATES], on_success_callback=CertificationNotifier("certified"))
    def promote(reg: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        cert = mc.promote(reg["run_id"])
        if outlet_events is not None:
            outlet_events[CERTIFICATES].extra = {
                "certificate_id": cert["certificate_id"], "model": cert["model"], "version": cert["version"],
                "valid_until": cert["valid_until"], "evidence_digest": cert["evidence_digest"],
            }
        return cert

    stages >> decision >> await_signoff >> promote(registered)
