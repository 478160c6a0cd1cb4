"""
### Sign-off and certificate for one certification run

Started by `certify_model` (task *request_signoff*) for a run that passed the gate; its DAG run id is
`signoff__<modelcert run id>`, its conf `{"modelcert_run_id": ...}`.

1. **await_signoff** waits in the triggerer (no worker slot) for the spec's required approvals
   (Airflow menu *Certification*, or `modelcert approve RUN --role ROLE`); a decline or the spec's sign-off
   timeout fails it (a timeout never approves);
2. **promote** issues the certificate and emits the `modelcert://certificates` asset event.

Waiting runs live here, not in `certify_model`, so that runs waiting for people (days) never hold back new
certifications; `max_active_runs` is large (`MODELCERT_SIGNOFF_MAX_ACTIVE_RUNS`, default 512) because a
deferred sensor costs no worker slot, only a trigger in the triggerer.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from modelcert_airflow import tasks as mc
from modelcert_airflow.notifiers import CertificationNotifier
from modelcert_airflow.sensors import SignoffSensor

CERTIFICATES = Asset("modelcert://certificates")

with DAG(
    dag_id=mc.SIGNOFF_DAG_ID,
    dag_display_name="Sign off a certification run",
    description="Approvals (deferred) → certificate",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=int(os.environ.get("MODELCERT_SIGNOFF_MAX_ACTIVE_RUNS", "512")),
    tags=["modelcert", "certification"],
    default_args={**mc.RETRY_POLICY, "owner": "modelcert"},
    params={
        mc.SIGNOFF_PARAM: Param(
            type="string",
            title="Certification run id",
            description="The modelcert run awaiting sign-off (set by certify_model's request_signoff task).",
            pattern=r"^[0-9a-f-]{36}$",
        ),
    },
    render_template_as_native_obj=True,
) as dag:

    await_signoff = SignoffSensor(
        task_id="await_signoff",
        run_id="{{ params.modelcert_run_id }}",
        poll_interval=float(os.environ.get("MODELCERT_SIGNOFF_POLL_SECONDS", "300")),
        on_failure_callback=CertificationNotifier("signoff_failed"),
    )

    @task(outlets=[CERTIFICATES], on_success_callback=CertificationNotifier("certified"))
    def promote(params: dict[str, Any] | None = None, outlet_events: Any = None) -> dict[str, Any]:
        assert params is not None
        cert = mc.promote(params[mc.SIGNOFF_PARAM])
        if outlet_events is not None:
            outlet_events[CERTIFICATES].extra = {
                "certificate_id": cert["certificate_id"], "model": cert["model"], "version": cert["version"],
                "valid_until": cert["valid_until"], "evidence_digest": cert["evidence_digest"],
            }
        return cert

    await_signoff >> promote()
