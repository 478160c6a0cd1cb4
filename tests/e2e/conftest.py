"""One real Airflow (api-server, scheduler, dag-processor, triggerer) on PostgreSQL for all e2e tests:
starting it costs ~40 s, so the REST and the browser tests share it (each test finds its own runs by id)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from modelcert.db.models import CertificationRun
from modelcert.db.session import get_engine, reader
from modelcert_devstack.airflow_stack import AirflowStack
from tests.conftest import _admin_exec, _with_db


@pytest.fixture(scope="package")
def stack(pg_admin_url: str, migrated_template: str, demo_build: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    suffix = uuid.uuid4().hex[:8]
    _admin_exec(pg_admin_url, f'CREATE DATABASE "af_e2e_{suffix}"')
    _admin_exec(pg_admin_url, f'CREATE DATABASE "mc_e2e_{suffix}" TEMPLATE "{migrated_template}"')
    st = AirflowStack(home=tmp_path_factory.mktemp("airflow_e2e"),
                      metadata_url=_with_db(pg_admin_url, f"af_e2e_{suffix}"),
                      results_url=_with_db(pg_admin_url, f"mc_e2e_{suffix}"))
    st.migrate()
    st.start(timeout=240)
    try:
        st.wait_dag("certify_model", timeout=240)
        st.wait_dag("signoff_model", timeout=120)  # certify_model hands runs awaiting sign-off to it
        yield st
    finally:
        st.stop()
        from modelcert.db.session import dispose_all

        dispose_all()
        for db in (f"af_e2e_{suffix}", f"mc_e2e_{suffix}"):
            _admin_exec(pg_admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def run_row(stack: AirflowStack, airflow_run_id: str) -> CertificationRun | None:
    """The results-DB run created by one Airflow DAG run."""
    with reader(get_engine(stack.results_url)) as s:
        return s.execute(select(CertificationRun).where(CertificationRun.airflow_run_id == airflow_run_id)
                         ).scalar_one_or_none()
