"""Benchmark: what running a certification through Airflow costs over ``modelcert run`` in-process — CPU of all
task processes and trigger -> awaiting sign-off wall time — with and without the stage libraries pre-imported in the
process that forks the tasks (``plugins/airflow_local_settings.py``, ``MODELCERT_PREIMPORT``).

    .venv/bin/python bench/bench_airflow_overhead.py [--spec german_credit.yaml] [--admin-url URL]

For each mode it starts the dev stack (api-server, scheduler with LocalExecutor, dag-processor, triggerer) on fresh
databases, triggers ``certify_model`` once to warm up, then once measured. CPU of a run: the sum of user + system
time (own and reaped children) over every process of the stack, read from ``/proc`` just before the trigger and
once the run awaits sign-off (so it includes the scheduler's and api-server's share of the run; idle heartbeats in
that window too). In-process reference: register + six stages + decide in this process, libraries imported
before timing (a warm worker), CPU from ``getrusage``.

Targets: Airflow task CPU <= 1.3x in-process CPU; trigger -> awaiting sign-off <= 1.3x in-process wall.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import psutil
from sqlalchemy.engine import make_url

from modelcert_devstack.pgadmin import admin_exec


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user + system, reaped children included) of ``roots`` and all their live descendants."""
    procs: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            procs.update({p.pid: p for p in [root, *root.children(recursive=True)]})
        except psutil.NoSuchProcess:
            continue
    total = 0.0
    for p in procs.values():
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def in_process(spec: Path, results_url: str) -> tuple[float, float]:
    from bench_adult import warm_imports

    from modelcert import pipeline
    from modelcert.db.session import get_engine
    from modelcert.stages import STAGE_NAMES

    warm_imports()
    engine = get_engine(results_url)

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        k = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime + k.ru_utime + k.ru_stime

    best = (float("inf"), float("inf"))
    for _ in range(2):  # the first one warms caches (model files, Postgres)
        t0, c0 = time.perf_counter(), cpu()
        reg = pipeline.register(engine, spec, run_key=f"bench/{uuid.uuid4()}")
        for name in STAGE_NAMES:
            pipeline.run_stage(engine, reg.run_id, name)
        status = pipeline.decide(engine, reg.run_id)["status"]
        best = (time.perf_counter() - t0, cpu() - c0)
    print(f"in-process (modelcert run, warm): wall {best[0]:.1f} s, CPU {best[1]:.1f} s (decision {status})",
          flush=True)
    return best


def through_airflow(spec: str, admin_url: str, preimport: bool) -> tuple[float, float]:
    from modelcert.db import migrate
    from modelcert.db.session import dispose_all
    from modelcert_devstack.airflow_stack import AirflowStack

    suffix = uuid.uuid4().hex[:8]
    af, mc = f"bench_af_{suffix}", f"bench_mc_{suffix}"
    admin_exec(admin_url, f'CREATE DATABASE "{af}"')
    admin_exec(admin_url, f'CREATE DATABASE "{mc}"')
    results_url = make_url(admin_url).set(database=mc).render_as_string(hide_password=False)
    metadata_url = make_url(admin_url).set(database=af).render_as_string(hide_password=False)
    migrate.upgrade(results_url)
    os.environ["MODELCERT_PREIMPORT"] = "1" if preimport else "0"
    stack = AirflowStack(home=Path(tempfile.mkdtemp(prefix="bench-airflow-")), metadata_url=metadata_url,
                         results_url=results_url)
    label = "pre-imported" if preimport else "no pre-import"
    try:
        stack.migrate()
        stack.start(timeout=600)
        stack.wait_dag("certify_model", timeout=600)
        best = (float("inf"), float("inf"))
        for attempt in range(2):  # the first run warms the workers (and their imports when not pre-imported)
            pids = [p.pid for p in stack.procs.values()]
            c0, t0 = tree_cpu(pids), time.perf_counter()
            run_id = stack.trigger("certify_model", {"spec": spec})

            def decided(run_id: str = run_id) -> str | None:
                states = stack.task_states("certify_model", run_id)
                done = [t for t in ("awaiting_signoff", "rejected", "error") if states.get(t) in ("success", "failed")]
                return done[0] if done else None

            verdict = stack.wait_for(decided, timeout=900, interval=0.5, what="the gate's verdict")
            wall, cpu = time.perf_counter() - t0, tree_cpu(pids) - c0
            print(f"airflow ({label}) run {attempt + 1}: trigger -> {verdict} {wall:.1f} s, CPU of the stack "
                  f"{cpu:.1f} s", flush=True)
            best = (wall, cpu)
        return best
    finally:
        stack.stop()
        shutil.rmtree(stack.home, ignore_errors=True)
        dispose_all()
        for db in (af, mc):
            admin_exec(admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="german_credit.yaml", help="a shipped spec (include/specs)")
    ap.add_argument("--admin-url", default=os.environ.get("MODELCERT_TEST_DATABASE_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from modelcert_devstack.airflow_stack import SPEC_DIR

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    figures = {mode: through_airflow(args.spec, args.admin_url, mode) for mode in (False, True)}
    suffix = uuid.uuid4().hex[:8]
    db = f"bench_mc_{suffix}"
    admin_exec(args.admin_url, f'CREATE DATABASE "{db}"')
    try:
        from modelcert.db import migrate

        url = make_url(args.admin_url).set(database=db).render_as_string(hide_password=False)
        migrate.upgrade(url)
        wall, cpu = in_process(SPEC_DIR / args.spec, url)
    finally:
        from modelcert.db.session import dispose_all

        dispose_all()
        admin_exec(args.admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    print("\nmode                     trigger->verdict   CPU      vs in-process (wall, CPU)")
    print(f"in-process               {wall:8.1f} s      {cpu:6.1f} s")
    for mode, (w, c) in figures.items():
        name = "airflow, pre-imported" if mode else "airflow, no pre-import"
        print(f"{name:<24} {w:8.1f} s      {c:6.1f} s   x{w / wall:.2f}, x{c / cpu:.2f}   (targets <= 1.3x)")


if __name__ == "__main__":
    main()
