"""
### Certify a model for high-risk use

Give a certification spec (a shipped one from `include/specs`, or a path). The run then:

1. **register** validates the spec, hashes model, data and spec into the *evidence digest*, records the run;
2. **stages** (one task each, in parallel): data quality (Great Expectations), performance (scikit-learn),
   robustness (IBM ART), fairness (IBM AIF360), drift (Evidently), compliance (policy checks);
   red = failed checks or error, pink = not applicable (the reason is in the log and in Postgres);
3. **decide** rejects (any failed required check) or errors (any stage error, with its cause) — the task and
   the run turn red and list the reasons — or moves the run to *awaiting sign-off*;
4. **request_signoff** hands a run awaiting sign-off to the **`signoff_model`** DAG (one DAG run per
   certification run, run id `signoff__<run id>`), which waits in the triggerer for the approvals and then
   issues the certificate. This DAG run ends here: green = awaiting sign-off, red = rejected or error.

Why the wait is a separate DAG: a run waiting for people can take days. While the sensor lived in this DAG,
every waiting run counted against `max_active_runs`, and four waiting runs left every new certification
`queued`. Now this DAG's `max_active_runs` (`MODELCERT_CERTIFY_MAX_ACTIVE_RUNS`, default 4) only bounds how many
certifications *compute* at once, and `signoff_model` allows many waiting runs (a deferred sensor holds no
worker slot). The trigger uses a deterministic run id with `reset_dag_run`: a retry or a re-run of this DAG
run restarts the same sign-off DAG run (it re-reads the state) instead of starting a second one.

Infrastructure faults (the results database down for a while) are retried, in-process and by Airflow
(`RETRY_POLICY` in `modelcert_airflow.tasks`); a verdict is final and never retried. Every number, threshold
and decision is stored in the modelcert results database, not in Airflow.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, TaskGroup, task

from modelcert.stages import STAGE_NAMES
from modelcert_airflow import tasks as mc
from modelcert_airflow.notifiers import CertificationNotifier

SHIPPED_SPECS = sorted(p.name for p in mc.SPEC_DIR.glob("*.yaml"))

with DAG(
    dag_id="certify_model",
    dag_display_name="Certify a model",
    description="Spec → six checks → gate → hand-off to sign-off",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=int(os.environ.get("MODELCERT_CERTIFY_MAX_ACTIVE_RUNS", "4")),
    tags=["modelcert", "certification"],
    default_args={**mc.RETRY_POLICY, "owner": "modelcert"},
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
    user_defined_macros={"signoff_run_id": mc.signoff_run_id},
    render_template_as_native_obj=True,
) as dag:

    @task
    def register(params: dict[str, Any] | None = None, dag_run: Any = None) -> dict[str, Any]:
        assert params is not None and dag_run is not None
        return mc.register(params["spec"], dag_run.dag_id, dag_run.run_id,
                           getattr(dag_run, "triggering_user_name", None))

    registered = register()

    with TaskGroup(mc.STAGE_GROUP, tooltip="One task per check stage; each stores its results in Postgres") as stages:
        for name in STAGE_NAMES:

            @task(task_id=name)
            def run_stage(reg: dict[str, Any], stage_name: str = name, ti: Any = None) -> dict[str, Any]:
                return mc.stage(stage_name, reg["run_id"], attempt=getattr(ti, "try_number", 1),
                                max_tries=getattr(ti, "max_tries", None),
                                report_error=lambda info: ti.xcom_push(key=mc.STAGE_ERROR_KEY, value=info))

            run_stage(registered)

    @task(trigger_rule="all_done",
          on_success_callback=CertificationNotifier("awaiting_signoff"),
          on_failure_callback=CertificationNotifier("decision"))
    def decide(ti: Any = None, dag_run: Any = None) -> dict[str, Any]:
        return mc.decide(mc.registered_run_id(ti), mc.stage_failures(ti, dag_run.dag_id, dag_run.run_id))

    decision = decide()
    registered >> decision

    request_signoff = TriggerDagRunOperator(
        task_id="request_signoff",
        trigger_dag_id=mc.SIGNOFF_DAG_ID,
        trigger_run_id="{{ signoff_run_id(ti.xcom_pull(task_ids='register')['run_id']) }}",
        conf={mc.SIGNOFF_PARAM: "{{ ti.xcom_pull(task_ids='register')['run_id'] }}"},
        reset_dag_run=True,
        wait_for_completion=False,
    )

    stages >> decision >> request_signoff
