"""Environment for running a DAG with ``dag.test()`` in a clean subprocess: a private AIRFLOW_HOME with a
migrated sqlite metadata DB, our dags/ and plugins/, and the results DB given by URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def prepare(home: Path, results_url: str, **extra: str) -> None:
    """Call before anything imports Airflow."""
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "MODELCERT_DATABASE_URL": results_url,
        "GX_ANALYTICS_ENABLED": "false",
        **extra,
    })
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "airflow.db").exists():
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                       capture_output=True)
    sys.path[:0] = [str(REPO / "plugins"), str(REPO / "dags")]
