"""Import once per worker: the stage libraries (Evidently, Great Expectations, AIF360, ART, scikit-learn, skops;
~6 s and ~400 MiB) are imported by the long-lived process that *forks* task processes, so each task inherits them
instead of importing them again.

Airflow 3 on Linux forks every task process from its executor's worker (LocalExecutor: worker processes forked
from the scheduler; CeleryExecutor: the prefork pool of ``airflow celery worker``), and every Airflow process
imports ``airflow_local_settings`` at start-up (Airflow's own hook, found on the plugins folder's path). That module
calls :func:`preimport_if_worker`, which imports the stage libraries only in the scheduler and in Celery workers:
the api-server, dag-processor and triggerer stay light (DAG parsing never pays for them).

The same processes limit native thread pools (OpenMP, OpenBLAS) to ``MODELCERT_TASK_NATIVE_THREADS`` threads
(default 1) for the tasks they fork: the executor already runs a run's stage tasks side by side, one per core, and
each stage's OpenMP/BLAS team on top of that only oversubscribes the cores, its spinning threads burning CPU (at
1 M rows the stage tasks took 40-90 % more CPU than the same stages in-process).

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
    "modelcert.stages.explainability",
    "shap",
    "statsmodels.stats.proportion",
    "statsmodels.stats.multitest",
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


def preimport_if_worker(argv: Sequence[str] | None = None) -> float | None:
    """Pre-import the stage libraries when this process forks tasks and ``MODELCERT_PREIMPORT`` is not 0."""
    if os.environ.get("MODELCERT_PREIMPORT", "1") == "0" or not is_task_forking_process(argv or sys.argv):
        return None
    threads = native_threads()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))  # read when a native library loads (here or in a task)
    seconds = preimport()
    limit_native_threads(threads)
    log.info("modelcert: stage libraries pre-imported in %.1f s; forked tasks inherit them (%d native thread(s))",
             seconds, threads)
    return seconds


def native_threads() -> int:
    """``MODELCERT_TASK_NATIVE_THREADS`` (default 1): native threads per task process."""
    raw = os.environ.get("MODELCERT_TASK_NATIVE_THREADS", "1")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        log.warning("MODELCERT_TASK_NATIVE_THREADS=%r is not a positive integer; using 1", raw)
        return 1
    return value


def limit_native_threads(threads: int) -> None:
    """Set the loaded OpenMP/BLAS libraries to ``threads`` threads (threadpoolctl); forked tasks inherit it."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except Exception as exc:  # noqa: BLE001 - never break Airflow's start-up for an optimisation
        log.warning("modelcert: could not limit native threads: %s: %s", type(exc).__name__, exc)
