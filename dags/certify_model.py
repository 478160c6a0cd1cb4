"""
### Certify a model for high-risk use

Give a certification spec (a shipped one from `include/specs`, or a path). The run then:

1. **register** validates the spec, hashes model, data and spec into the *evidence digest*, records the run;
2. **stages** (one task each, in parallel): data quality (Great Expectations), performance (scikit-learn),
   robustness (IBM ART), fairness (IBM AIF360), drift (Evidently), compliance (policy checks), explainability
   (SHAP importance, proxies of protected attributes, weak slices, and the comparison with the certified champion);
3. **decide** (the gate) reads what the stages stored and branches to the one task named for its verdict:
   **awaiting_signoff** → **request_signoff** hands the run to the **`signoff_model`** DAG (one DAG run per
   certification run, run id `signoff__<run id>`, its note naming the model and version), which waits in the
   triggerer for the approvals and then issues the certificate; **rejected** (a failed required check, one
   log line per reason); **error** (a stage or the registration could not judge, with the cause).

**How a verdict looks in the grid.** A model failing its checks is a result, not a crash: every stage whose
checks ran is green, with its verdict and failed checks in its log and XCom (pink = not applicable, reason in
the log), and the run ends **success** with the green **rejected** task visible in the grid — the rejected
model is in Postgres, the report and the notification, and nobody in ops has to act. Red means something broke
and someone must look: a stage that could not judge or crashed (its task, then the **error** task), a refused
spec (register, then error), a results-database outage that outlasted the retries. So a rejected certification
and a crashed stage are told apart at a glance, and a red DAG run is always worth opening.

**Which model.** Trigger with a run id naming it, `<model>_<version>__<UTC timestamp>` (the demo and the
harness do, e.g. `german-credit-lr_1.0.0__2026-12-02T10:15:03.123Z`; in the UI's trigger form, set *Run id*).
Airflow 3.3 gives a task no way to set the note of its own DAG run (the Task SDK can set a note only on a run
it triggers), so the model and version are also in the **register** task's XCom, and the sign-off DAG run this
run triggers carries them in its note.

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

from airflow.sdk import DAG, Param, TaskGroup, task

from modelcert.stages import STAGE_NAMES
from modelcert_airflow import tasks as mc
from modelcert_airflow.notifiers import CertificationNotifier
from modelcert_airflow.operators import RequestSignoffOperator

SHIPPED_SPECS = sorted(p.name for p in mc.SPEC_DIR.glob("*.yaml"))

with DAG(
    dag_id="certify_model",
    dag_display_name="Certify a model",
    description="Spec → seven checks → gate → hand-off to sign-off",
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
    user_defined_macros={"signoff_run_id": mc.signoff_run_id, "signoff_note": mc.signoff_note},
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

    @task.branch(trigger_rule="all_done")
    def decide(ti: Any = None, dag_run: Any = None) -> str:
        decision = mc.decide(mc.registered_run_id(ti), mc.stage_failures(ti, dag_run.dag_id, dag_run.run_id))
        ti.xcom_push(key=mc.DECISION_KEY, value=decision)
        return mc.verdict_task(decision)

    decision = decide()
    registered >> decision
    stages >> decision

    @task(task_id=mc.VERDICT_TASKS["awaiting_signoff"], on_success_callback=CertificationNotifier("awaiting_signoff"))
    def awaiting_signoff(ti: Any = None) -> dict[str, Any]:
        return mc.announce_decision(ti)

    @task(task_id=mc.VERDICT_TASKS["rejected"], on_success_callback=CertificationNotifier("decision"))
    def rejected(ti: Any = None) -> dict[str, Any]:
        return mc.announce_decision(ti)

    @task(task_id=mc.VERDICT_TASKS["error"], on_failure_callback=CertificationNotifier("decision"))
    def error(ti: Any = None) -> dict[str, Any]:
        return mc.announce_decision(ti)  # fails the task (and the DAG run) with the cause

    waiting = awaiting_signoff()
    decision >> [waiting, rejected(), error()]

    request_signoff = RequestSignoffOperator(
        task_id="request_signoff",
        trigger_dag_id=mc.SIGNOFF_DAG_ID,
        trigger_run_id="{{ signoff_run_id(ti.xcom_pull(task_ids='register')['run_id']) }}",
        conf={mc.SIGNOFF_PARAM: "{{ ti.xcom_pull(task_ids='register')['run_id'] }}"},
        note="{{ signoff_note(ti.xcom_pull(task_ids='register'), run_id) }}",
        reset_dag_run=True,
        wait_for_completion=False,
    )

    waiting >> request_signoff
