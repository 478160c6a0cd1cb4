"""End to end on Airflow's CeleryExecutor: Redis as broker (this machine's, at 127.0.0.1:6379, database 6 unless
MODELCERT_CELERY_BROKER_URL says otherwise; a queue of this run's own, so runs side by side never take each other's
work), the metadata PostgreSQL as result backend, and two ``airflow celery worker`` processes.

One model version is certified through ``certify_model`` (approved by the demo approvers, promoted by
``signoff_model``), two more are certified in this process meanwhile, then ``recertify_models`` recertifies all
three; the task instances (their ``hostname``: each worker records its own address) show that the work ran on both
workers. The versions are copies of german_credit.yaml without its robustness checks (the slowest stage, which
recertification does not run), to keep the test short.
Stopping the stack leaves no worker, log server or task process behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelcert.db.models import Certificate
from modelcert.db.session import get_engine, reader
from modelcert_devstack.airflow_stack import CELERY_BROKER_ENV, AirflowStack, session_members, worker_address
from tests.e2e.conftest import e2e_stack, run_row

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.store]
#: Redis database of the e2e tests (the demo's is 5).
E2E_BROKER = "redis://127.0.0.1:6379/6"
VERSIONS = ["1.0.0", "1.0.1", "1.0.2"]


@pytest.fixture(scope="module")
def celery_stack(pg_admin_url: str, migrated_template: str, demo_build: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    with e2e_stack(pg_admin_url, migrated_template, tmp_path_factory.mktemp("airflow_celery"), "cel",
                   ("certify_model", "signoff_model", "recertify_models"),
                   executor="celery", workers=2, worker_concurrency=2,
                   broker_url=os.environ.get(CELERY_BROKER_ENV) or E2E_BROKER, queue=f"modelcert-e2e-{uuid.uuid4().hex[:8]}",
                   extra_env={"MODELCERT_RECERTIFY_SCHEDULE": "none"}) as st:  # only the run this test triggers
        yield st


def _task_instances(stack: AirflowStack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    r = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    r.raise_for_status()
    return list(r.json()["task_instances"])


def _run_state(stack: AirflowStack, dag_id: str, run_id: str) -> str | None:
    """A DAG run's state, None while it does not exist (request_signoff creates the sign-off run after the gate)."""
    r = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    return str(r.json()["state"]) if r.status_code == 200 else None


def _diagnose(stack: AirflowStack) -> str:
    return "\n".join(f"--- {p}\n{stack.tail(p, 25)}" for p in ("scheduler", "worker1", "worker2"))


def test_certify_and_recertify_on_two_celery_workers(celery_stack: AirflowStack, tmp_path: Path) -> None:
    from modelcert import recertify
    from modelcert.governance import Identity, record_decision
    from modelcert.report import run_report
    from modelcert_devstack import fleet

    st = celery_stack
    engine = get_engine(st.results_url)
    assert st.silent_workers() == []  # both workers answer a ping through the broker
    first, *others = fleet.write_versions(tmp_path, VERSIONS, robustness=False)
    airflow_run = st.trigger("certify_model", {"spec": str(first)})
    # While the workers certify the first, the others are certified here (real stages, demo sign-offs).
    for path in others:
        fleet.certify(engine, path, key=f"e2e-celery/{path.stem}")
    try:
        st.wait_for(lambda: (r := run_row(st, airflow_run)) is not None and r.status != "running",
                    timeout=300, what="the gate's decision")
        row = run_row(st, airflow_run)
        assert row is not None and row.status == "awaiting_signoff", (row and row.reasons, _diagnose(st))
        shown = str(run_report(engine, row.id)["evidence_digest"])
        fleet.accept_blocking(engine, row.id, shown)  # German's inconclusive fairness checks (high tier)
        for who, role in fleet.APPROVERS:
            record_decision(engine, row.id, Identity(who, "demo:auto-approval"), role=role, decision="approve",
                            evidence_digest=shown)
        signoff_run = f"signoff__{row.id}"
        st.wait_for(lambda: _run_state(st, "signoff_model", signoff_run) in ("success", "failed"), timeout=180,
                    what="the sign-off DAG run to promote")
        assert st.run_state("signoff_model", signoff_run) == "success", _diagnose(st)
        with reader(engine) as s:
            cert = s.execute(select(Certificate).where(Certificate.run_id == row.id)).scalar_one()
        assert cert.status == "valid"

        recert_run = st.trigger("recertify_models", {})
        st.wait_for(lambda: st.run_state("recertify_models", recert_run) in ("success", "failed"), timeout=300,
                    what="the recertification run")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(st)}") from exc
    assert st.run_state("recertify_models", recert_run) == "success", _diagnose(st)
    outcomes = recertify.run_outcomes(engine, dag_id="recertify_models", airflow_run_id=recert_run)
    assert sorted(o["version"] for o in outcomes) == VERSIONS, outcomes
    assert {o["status"] for o in outcomes} == {"passed"} and {o["certificate_status"] for o in outcomes} == {"valid"}

    tis = [*_task_instances(st, "certify_model", airflow_run), *_task_instances(st, "signoff_model", signoff_run),
           *_task_instances(st, "recertify_models", recert_run)]
    ran = [ti for ti in tis if ti["state"] == "success"]
    mapped = [ti for ti in ran if ti["task_id"] == "recertify"]
    assert len(mapped) == len(VERSIONS), [(ti["task_id"], ti["map_index"], ti["state"]) for ti in tis]
    # Every task went through this stack's Celery queue and names the worker that ran it; both workers worked.
    assert {ti["queue"] for ti in ran} == {st.queue}
    hosts = {ti["hostname"] for ti in ran}
    assert hosts <= {worker_address(1), worker_address(2)}, hosts
    assert len(hosts) == 2, [(ti["task_id"], ti["hostname"]) for ti in ran]


def test_stopping_the_stack_leaves_no_worker_behind(celery_stack: AirflowStack) -> None:
    """Runs last in this module: stops the shared stack itself (the fixture's stop is then a no-op)."""
    st = celery_stack
    leaders = {name: p.pid for name, p in st.procs.items()}
    assert {"worker1", "worker2", "worker1-log-server", "worker2-log-server"} <= set(leaders)
    members = session_members(list(leaders.values()))
    # Each Celery worker runs its pool processes (concurrency 2): they are part of what must go.
    assert len(members) > len(leaders)
    st.stop()
    alive = [p for p in members if _running(p)]
    assert alive == [], [(p.pid, p.name()) for p in alive]
    assert st.silent_workers() == list(st.celery_workers.values())  # the broker reaches neither any more


def _running(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
