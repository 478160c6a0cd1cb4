"""Import once per worker: the stage libraries (Evidently, Great Expectations, AIF360, ART, scikit-learn, skops;
~6 s and ~400 MiB) are imported by the long-lived process that *forks* task processes, so each task inherits them
instead of importing them again.

Airflow 3 on Linux forks every task process from its executor's worker (LocalExecutor: worker processes forked
from the scheduler; CeleryExecutor: the prefork pool of ``airflow celery worker``), and every Airflow process
imports ``airflow_local_settings`` at start-up (Airflow's own hook, found on the plugins folder's path). That module
calls :func:`preimport_if_worker`, which imports the stage libraries only in the scheduler and in Celery workers:
the api-server, dag-processor and triggerer stay light (DAG parsing never pays for them).

The same processes also import what every task process needs before our code runs (the DAG files' and the
plugin's imports: the Task SDK parses the DAG file and loads the plugins in each task process) and do the one-time
set-up each task would repeat (:func:`warm`); ``plugins/.airflowignore`` keeps the plugin manager from executing
our non-plugin modules a second time in every process.

``MODELCERT_PREIMPORT=0`` turns it off (to measure the difference: ``bench/bench_airflow_overhead.py``).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Sequence

#: Modules a stage task imports: the stage modules and the libraries they import lazily inside functions.
MODULES = (
    "modelcert.pipeline",
    "modelcert.stages.data_quality",
    "modelcert.stages.performance",
    "modelcert.stages.robustness",
    "modelcert.stages.fairness",
    "modelcert.stages.drift",
    "modelcert.stages.compliance",
    "great_expectations",
    "great_expectations.expectations",
    "evidently",
    "evidently.legacy.calculations.stattests",
    "aif360.metrics",
    "art.attacks.evasion",
    "art.estimators.classification",
    "skops.io",
    "sklearn.metrics",
    "sklearn.calibration",
    "pyarrow.parquet",
    # What every task process imports before our code runs: the DAG files' imports (the Task SDK parses the DAG
    # file in each task process) and the plugin's (it loads the plugins to find listeners; the FastAPI app of
    # modelcert_airflow.api comes with plugin.py). ~0.1-0.2 s of CPU per task otherwise.
    "airflow.sdk",
    "airflow.version",
    "airflow.sdk.definitions.decorators",
    "airflow.sdk.listener",
    "airflow.dag_processing.dagbag",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.standard.decorators.branch_python",
    "airflow.providers.standard.operators.trigger_dagrun",
    "modelcert_airflow.tasks",
    "modelcert_airflow.recertify_tasks",
    "modelcert_airflow.notifiers",
    "modelcert_airflow.operators",
    "modelcert_airflow.sensors",
    "modelcert_airflow.triggers",
    "modelcert_airflow.plugin",
)

log = logging.getLogger("modelcert.airflow.preimport")


def is_task_forking_process(argv: Sequence[str]) -> bool:
    """Whether this process forks task processes: ``airflow scheduler`` (LocalExecutor) or
    ``airflow celery worker``."""
    args = [a for a in argv[1:] if not a.startswith("-")]
    return args[:1] == ["scheduler"] or args[:2] == ["celery", "worker"]


def preimport(modules: Sequence[str] = MODULES) -> float:
    """Import ``modules``; a module that fails to import is logged and skipped (the task imports it and reports
    the error where it belongs). Returns the seconds spent."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    t0 = time.perf_counter()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - never break Airflow's start-up for an optimisation
            log.warning("modelcert pre-import of %s failed: %s: %s", name, type(exc).__name__, exc)
    return time.perf_counter() - t0


def warm() -> None:
    """One-time set-up every task would otherwise repeat in its own process, done once in the forking process:
    SQLAlchemy's configuration of our mappers (on the first query; with the next, ~0.03 s), the providers'
    asset URI handlers (loaded by the first ``Asset``) and the shipped regulatory framework files
    (``modelcert.dossier.frameworks.load``, cached per process; package data, so a changed file needs a restart,
    like changed code). Nothing that depends on a run, a spec or the database. Failures are logged and skipped."""
    try:
        from modelcert.db.models import Base
        from modelcert.dossier import frameworks

        # Our registry only: sqlalchemy.orm.configure_mappers() would configure Airflow's mappers too, some of
        # which are not defined yet while airflow_local_settings runs, and a failed configuration sticks.
        Base.registry.configure()
        # The first Asset a process defines (signoff_model and recertify_models do, at parse time) loads the
        # providers' asset URI handlers; once here instead of in every task process of those DAGs.
        from airflow.sdk import Asset

        Asset("modelcert://pre-import")
        for name in frameworks.FRAMEWORKS:
            frameworks.load(name)
    except Exception as exc:  # noqa: BLE001 - never break Airflow's start-up for an optimisation
        log.warning("modelcert warm-up failed: %s: %s", type(exc).__name__, exc)


def preimport_if_worker(argv: Sequence[str] | None = None) -> float | None:
    """Pre-import the stage libraries when this process forks tasks and ``MODELCERT_PREIMPORT`` is not 0."""
    if os.environ.get("MODELCERT_PREIMPORT", "1") == "0" or not is_task_forking_process(argv or sys.argv):
        return None
    seconds = preimport()
    warm()
    log.info("modelcert: stage libraries pre-imported in %.1f s; forked tasks inherit them", seconds)
    return seconds
