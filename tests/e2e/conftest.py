"""One real Airflow (api-server, scheduler, dag-processor, triggerer) on PostgreSQL for all e2e tests:
starting it costs ~40 s, so the REST and the browser tests share it (each test finds its own runs by id)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelcert.db.models import CertificationRun
from modelcert.db.session import get_engine, reader
from modelcert_devstack.airflow_stack import AirflowStack
from tests.conftest import _admin_exec, _with_db


@contextmanager
def e2e_stack(pg_admin_url: str, migrated_template: str, home: Path, prefix: str, dags: tuple[str, ...],
              **stack_options: Any) -> Iterator[AirflowStack]:
    """An Airflow stack on two fresh databases (metadata, and results from the migrated template), started and
    waited for until ``dags`` are parsed; stopped and both databases dropped afterwards, also on a failed start.
    ``stack_options`` go to :class:`AirflowStack` (executor, workers, broker …)."""
    suffix = uuid.uuid4().hex[:8]
    af, mc = f"af_{prefix}_{suffix}", f"mc_{prefix}_{suffix}"
    _admin_exec(pg_admin_url, f'CREATE DATABASE "{af}"')
    _admin_exec(pg_admin_url, f'CREATE DATABASE "{mc}" TEMPLATE "{migrated_template}"')
    st = AirflowStack(home=home, metadata_url=_with_db(pg_admin_url, af), results_url=_with_db(pg_admin_url, mc),
                      **stack_options)
    st.migrate()
    try:
        st.start(timeout=240)
        for i, dag in enumerate(dags):
            st.wait_dag(dag, timeout=240 if i == 0 else 120)
        yield st
    finally:
        st.stop()
        from modelcert.db.session import dispose_all

        dispose_all()
        for db in (af, mc):
            _admin_exec(pg_admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture(scope="package")
def stack(pg_admin_url: str, migrated_template: str, demo_build: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    # certify_model hands runs awaiting sign-off to signoff_model
    with e2e_stack(pg_admin_url, migrated_template, tmp_path_factory.mktemp("airflow_e2e"), "e2e",
                   ("certify_model", "signoff_model")) as st:
        yield st


def run_row(stack: AirflowStack, airflow_run_id: str) -> CertificationRun | None:
    """The results-DB run created by one Airflow DAG run."""
    with reader(get_engine(stack.results_url)) as s:
        return s.execute(select(CertificationRun).where(CertificationRun.airflow_run_id == airflow_run_id)
                         ).scalar_one_or_none()
