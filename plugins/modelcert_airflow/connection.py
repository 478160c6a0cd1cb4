"""How Airflow components reach the results database (never Airflow's own metadata DB)."""

from __future__ import annotations

import os

CONN_ID = "modelcert_db"


def results_db_url(conn_id: str = CONN_ID) -> str:
    """``MODELCERT_DATABASE_URL`` if set, else the Airflow connection ``modelcert_db``
    (e.g. ``AIRFLOW_CONN_MODELCERT_DB``)."""
    from modelcert.db.session import ENV_URL, normalize_url

    url = os.environ.get(ENV_URL)
    if url:
        return normalize_url(url)
    from airflow.sdk import BaseHook

    return normalize_url(BaseHook.get_connection(conn_id).get_uri())


def results_engine(conn_id: str = CONN_ID):
    from modelcert.db.session import get_engine

    return get_engine(results_db_url(conn_id))
