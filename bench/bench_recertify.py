"""Benchmark: recertify N certified model versions through the ``recertify_models`` DAG on Airflow's CeleryExecutor
with 1 and with 2 Celery workers (separate ``airflow celery worker`` processes), and print the speed-up.

    .venv/bin/python bench/bench_recertify.py [--versions 24] [--workers 1,2] [--concurrency 1]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

The versions are copies of the shipped German credit spec (1.0.0 .. 1.0.N-1, without robustness, which
recertification does not run), certified once in this process with the real stages and the demo sign-offs
(``modelcert_devstack.fleet``) into a template database. Each worker count then gets a fresh copy of that
database (so every certificate is due again), a fresh Airflow metadata database, and its own stack: api-server,
scheduler, dag-processor, triggerer and the workers, Redis as broker ($MODELCERT_CELERY_BROKER_URL, default
``redis://127.0.0.1:6379/7``, a queue per stack), the metadata PostgreSQL as result backend. One
``recertify_models`` run is triggered (one mapped ``recertify`` task per version) and timed:

* **run wall**: trigger → DAG run finished (what ops wait for);
* **recertify wall**: first mapped task start → last mapped task end (the part the workers share);
* **task CPU-ish**: the sum of the mapped tasks' durations (work to share; per task most is library imports).

``--concurrency`` is the task slots per worker (default 1: one worker = one slot, so the speed-up is what a
second machine with one slot would bring). On one machine the workers share its cores (2 here): more workers
than cores cannot speed up CPU-bound tasks; on several machines each worker brings its own.
The PostgreSQL admin URL is --admin-url, else $MODELCERT_TEST_DATABASE_URL, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from modelcert_devstack.pgadmin import admin_exec as _admin_exec
from modelcert_devstack.pgadmin import with_db as _with_db

BENCH_BROKER = "redis://127.0.0.1:6379/7"


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def certify_fleet(admin: str, template_db: str, versions: list[str], root: Path) -> float:
    """Certify every version into ``template_db``; returns the seconds it took."""
    from modelcert.db import migrate
    from modelcert.db.session import dispose_all, get_engine
    from modelcert_devstack import fleet

    url = _with_db(admin, template_db)
    migrate.upgrade(url)
    engine = get_engine(url)
    t0 = time.perf_counter()
    for path in fleet.write_versions(root, versions, robustness=False):
        fleet.certify(engine, path, key=f"bench-recertify/{path.stem}")
    took = time.perf_counter() - t0
    dispose_all()  # a template database must have no connections
    return took


def run_once(admin: str, template_db: str, af_template: str, workers: int, concurrency: int, broker: str,
             n: int, home: Path) -> dict[str, Any]:
    from modelcert import recertify
    from modelcert.db.session import dispose_all, get_engine
    from modelcert_devstack.airflow_stack import AirflowStack

    suffix = uuid.uuid4().hex[:8]
    results_db, metadata_db = f"mc_benchrc_{suffix}", f"af_benchrc_{suffix}"
    _admin_exec(admin, f'CREATE DATABASE "{results_db}" TEMPLATE "{template_db}"')
    _admin_exec(admin, f'CREATE DATABASE "{metadata_db}" TEMPLATE "{af_template}"')
    st = AirflowStack(home=home / f"w{workers}", metadata_url=_with_db(admin, metadata_db),
                      results_url=_with_db(admin, results_db), executor="celery", workers=workers,
                      worker_concurrency=concurrency, broker_url=broker, queue=f"bench-recertify-{suffix}",
                      extra_env={"MODELCERT_RECERTIFY_SCHEDULE": "none"})
    try:
        t_start = time.perf_counter()
        st.start(timeout=300)
        st.wait_dag("recertify_models", timeout=300)
        started = time.perf_counter() - t_start
        t0 = time.perf_counter()
        run = st.trigger("recertify_models", {})
        st.wait_for(lambda: st.run_state("recertify_models", run) in ("success", "failed"), timeout=3600,
                    interval=1.0, what="the recertification run")
        wall = time.perf_counter() - t0
        state = st.run_state("recertify_models", run)
        r = st.api("GET", f"/api/v2/dags/recertify_models/dagRuns/{run}/taskInstances", params={"limit": 500})
        r.raise_for_status()
        mapped = [ti for ti in r.json()["task_instances"] if ti["task_id"] == "recertify"]
        starts = [_ts(ti["start_date"]) for ti in mapped if ti["start_date"]]
        ends = [_ts(ti["end_date"]) for ti in mapped if ti["end_date"]]
        per_host: dict[str, int] = {}
        for ti in mapped:
            per_host[ti["hostname"] or "?"] = per_host.get(ti["hostname"] or "?", 0) + 1
        outcomes = recertify.run_outcomes(get_engine(st.results_url), dag_id="recertify_models", airflow_run_id=run)
        return {
            "workers": workers, "slots": workers * concurrency, "state": state, "stack_start_s": started,
            "wall_s": wall, "recertify_wall_s": (max(ends) - min(starts)) if starts and ends else float("nan"),
            "task_sum_s": sum(float(ti["duration"] or 0) for ti in mapped), "tasks": len(mapped),
            "passed": sum(o["status"] == "passed" for o in outcomes), "per_host": per_host,
        }
    finally:
        st.stop()
        dispose_all()
        for db in (results_db, metadata_db):
            _admin_exec(admin, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", type=int, default=24, help="model versions to recertify (default 24)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated (default 1,2)")
    ap.add_argument("--concurrency", type=int, default=1, help="task slots per worker (default 1)")
    ap.add_argument("--admin-url", default=os.environ.get("MODELCERT_TEST_DATABASE_URL"),
                    help="PostgreSQL URL allowed to create databases (default $MODELCERT_TEST_DATABASE_URL, "
                         "else the embedded PostgreSQL)")
    args = ap.parse_args()
    # SIGTERM/SIGHUP (a `timeout`, a closed terminal) unwind like Ctrl-C: every `finally` stops its stack and
    # drops its databases, nothing is left running.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    broker = os.environ.get("MODELCERT_CELERY_BROKER_URL") or BENCH_BROKER
    from modelcert_devstack.airflow_stack import AirflowStack, check_broker

    check_broker(broker)
    admin = args.admin_url
    if not admin:
        from modelcert.home import start_embedded

        admin = start_embedded().url("postgres")
    versions = [f"1.0.{i}" for i in range(args.versions)]
    suffix = uuid.uuid4().hex[:8]
    template_db, af_template = f"mc_benchrc_tpl_{suffix}", f"af_benchrc_tpl_{suffix}"
    work = Path(tempfile.mkdtemp(prefix="bench-recertify-"))
    _admin_exec(admin, f'CREATE DATABASE "{template_db}"')
    _admin_exec(admin, f'CREATE DATABASE "{af_template}"')
    try:
        print(f"==> certifying {len(versions)} versions of german-credit-lr in-process (real stages, demo "
              f"sign-offs) ...", flush=True)
        took = certify_fleet(admin, template_db, versions, work / "fleet")
        print(f"    {took:.1f} s ({took / len(versions):.2f} s per version)", flush=True)
        print("==> migrating an Airflow metadata database to copy for each run ...", flush=True)
        AirflowStack(home=work / "migrate", metadata_url=_with_db(admin, af_template), results_url="",
                     executor="celery", broker_url=broker).migrate()
        rows = []
        for w in counts:
            print(f"==> recertify_models on {w} Celery worker(s) x {args.concurrency} slot(s) ...", flush=True)
            rows.append(run_once(admin, template_db, af_template, w, args.concurrency, broker, len(versions),
                                 work / "stacks"))
            r = rows[-1]
            print(f"    {r['state']}: {r['passed']}/{r['tasks']} passed, wall {r['wall_s']:.1f} s, "
                  f"tasks per worker {r['per_host']}", flush=True)
    finally:
        from modelcert.db.session import dispose_all

        dispose_all()
        for db in (template_db, af_template):
            _admin_exec(admin, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    base = rows[0]
    print()
    print(f"recertify_models, {len(versions)} model versions (german-credit-lr copies), CeleryExecutor + Redis, "
          f"{os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    print(f"{'workers':>7} {'slots':>5} {'run wall s':>11} {'speed-up':>8} {'recertify wall s':>17} "
          f"{'speed-up':>8} {'sum of task s':>13} {'passed':>7}  tasks per worker (hostname)")
    for r in rows:
        print(f"{r['workers']:>7} {r['slots']:>5} {r['wall_s']:>11.1f} {base['wall_s'] / r['wall_s']:>7.2f}x "
              f"{r['recertify_wall_s']:>17.1f} {base['recertify_wall_s'] / r['recertify_wall_s']:>7.2f}x "
              f"{r['task_sum_s']:>13.1f} {r['passed']:>3}/{r['tasks']:<3}  "
              + ", ".join(f"{h}: {c}" for h, c in sorted(r["per_host"].items())))


if __name__ == "__main__":
    main()
