"""
### Recertify certified models on production data

On a schedule (`MODELCERT_RECERTIFY_SCHEDULE`, default `@daily`; `none` = manual only):

1. **expire_certificates** marks certificates past their validity `expired`;
2. **find_certificates** lists every valid certificate (and warns ops about those whose validity ends within
   the spec's `recertification.expiring_within_days`);
3. **recertify** — one mapped task per model version: the checks that apply to production data (data quality,
   drift against the certification-time reference, performance and fairness when the current data has labels,
   robustness and explainability when the spec asks for them) on the current data the spec's
   `recertification.current_data` names for the run's date, with the certification thresholds and the
   section's overrides.
   Green = every check holds (the certificate stays valid); red = a check failed (the certificate is
   **suspended**, reasons in Postgres) or the checks could not be made (e.g. no current data: recorded as error);
   pink = nothing to check (no `recertification:` section, or the certificate stopped being valid);
4. **announce_suspension** emits one `modelcert://certificates/suspended` asset event per newly suspended
   certificate (model, version, certificate in `extra`) so deployment DAGs can roll back;
5. **summary** fails the run when any recertification failed or errored, or a listed model has no recorded
   recertification (its task broke before recording one).

A suspended model returns to a valid certificate only through a new `certify_model` run with sign-off.
Re-running a day's run replaces the same rows: no duplicate audit events, no second suspension.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from modelcert_airflow import recertify_tasks as rt

SUSPENDED = Asset(rt.SUSPENDED_URI)

with DAG(
    dag_id="recertify_models",
    dag_display_name="Recertify certified models",
    description="Valid certificates → checks on current production data → stay valid, suspended or expired",
    doc_md=__doc__,
    schedule=rt.schedule_from_env(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["modelcert", "recertification"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30), "owner": "modelcert"},
    params={
        "ds": Param(
            None,
            type=["null", "string"],
            title="Data date",
            description="Judge the current data of this day (YYYY-MM-DD) instead of the run's logical date.",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
        ),
    },
) as dag:

    @task
    def expire_certificates() -> list[dict[str, Any]]:
        return rt.expire()

    @task
    def find_certificates(dag_run: Any = None) -> list[dict[str, Any]]:
        return rt.find(dag_run.dag_id, dag_run.run_id)

    @task(map_index_template="{{ task.op_kwargs['target']['label'] }}")
    def recertify(target: dict[str, Any], params: dict[str, Any] | None = None, dag_run: Any = None,
                  ti: Any = None) -> dict[str, Any]:
        return rt.recertify_one(target, dag_id=dag_run.dag_id, run_id=dag_run.run_id, ds=rt.run_ds(dag_run, params),
                                triggered_by=getattr(dag_run, "triggering_user_name", None) or "schedule",
                                attempt=getattr(ti, "try_number", 1))

    @task(trigger_rule="all_done")
    def suspended_certificates(dag_run: Any = None) -> list[dict[str, Any]]:
        return rt.suspended(dag_run.dag_id, dag_run.run_id)

    @task(outlets=[SUSPENDED], map_index_template="{{ task.op_kwargs['suspension']['label'] }}")
    def announce_suspension(suspension: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        extra = rt.announce(suspension)
        outlet_events[SUSPENDED].extra = extra
        return extra

    @task(trigger_rule="all_done", retries=0)
    def summary(targets: list[dict[str, Any]], dag_run: Any = None) -> dict[str, Any]:
        return rt.summary(dag_run.dag_id, dag_run.run_id, targets)

    targets = find_certificates()
    expire_certificates() >> targets
    results = recertify.expand(target=targets)
    pending = suspended_certificates()
    results >> pending
    announce_suspension.expand(suspension=pending) >> summary(targets)
