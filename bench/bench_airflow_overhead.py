"""Benchmark: what running a certification through Airflow costs over ``modelcert run`` in-process, side by side in
one run: the task CPU of the DAG run, trigger -> awaiting sign-off wall, and the in-process CPU and wall of
``register + stages + decide`` for the same spec; with and without the stage libraries pre-imported in the process
that forks the tasks (``plugins/airflow_local_settings.py``, ``MODELCERT_PREIMPORT``).

    .venv/bin/python bench/bench_airflow_overhead.py [--spec german_credit.yaml | --rows N] [--modes off,on]
        [--parallelism N] [--admin-url URL]

For each mode it starts the dev stack (api-server, scheduler with LocalExecutor, dag-processor, triggerer) on fresh
databases, triggers ``certify_model`` once to warm up, then once measured. ``signoff_model`` is paused, so the
sign-off DAG run that ``request_signoff`` creates stays queued and runs no task in the window.

**Task CPU.** With the LocalExecutor (Airflow 3.3) the scheduler forks ``[core] parallelism`` long-lived worker
processes (``airflow worker -- LocalExecutor: <idle>``); each runs a task's ``supervise()`` itself (title
``... LocalExecutor: <task>``), which forks the task process and reaps it with ``waitpid``. So the CPU of a task
instance is its worker's user + system time, own plus reaped children (supervisor + task process), between the
worker taking the workload and going back to ``<idle>``: the bench polls every worker's title and CPU every
0.1 s, and an idle worker (blocked on its queue) spends no CPU, so the poll does not blur the attribution. Task CPU
of a run = the workers' CPU from the trigger until the DAG run has ended and every worker is idle again (all of
the run's tasks, ``awaiting_signoff`` and ``request_signoff`` included); the per-task breakdown is printed next to
the in-process CPU of the same step. **Stack CPU** (second line): user + system (own and reaped children) of every
process of the stack, trigger -> verdict, so it includes the scheduler loop, api-server, dag-processor and
triggerer (idle heartbeats in that window too).

In-process reference: register + each stage + decide in this process, libraries imported before timing (a warm
worker), best of two, CPU from ``getrusage`` (self and children) per step.

Targets: Airflow task CPU <= 1.3x in-process CPU; trigger -> awaiting sign-off <= 1.3x in-process wall.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from sqlalchemy.engine import make_url

from modelcert_devstack.pgadmin import admin_exec

WORKER_TITLE = "airflow worker -- LocalExecutor"
TARGET = 1.3


def cpu_of(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_split(p: psutil.Process) -> tuple[float, float]:
    """(own, reaped children): for a LocalExecutor worker, the supervisor's and the task processes' CPU."""
    t = p.cpu_times()
    return t.user + t.system, t.children_user + t.children_system


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
            total += cpu_of(p)
        except psutil.NoSuchProcess:
            continue
    return total


def title(p: psutil.Process) -> str:
    return " ".join(p.cmdline()).strip()


def executor_workers(scheduler_pid: int) -> list[psutil.Process]:
    """The LocalExecutor's worker processes: the scheduler's children titled ``airflow worker -- LocalExecutor``."""
    out = []
    for p in psutil.Process(scheduler_pid).children(recursive=True):
        try:
            if title(p).startswith(WORKER_TITLE):
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


@dataclass
class TaskMeter:
    """Polls the executor's workers: CPU per workload (keyed by the task part of the worker's title)."""

    workers: list[psutil.Process]
    interval: float = 0.1
    per_task: dict[str, float] = field(default_factory=dict)
    #: Of per_task, the part spent in the task processes (the worker's reaped children); the rest is supervise().
    per_task_child: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> dict[int, tuple[str, float, float]]:
        out = {}
        for p in self.workers:
            with p.oneshot():
                own, children = cpu_split(p)
                out[p.pid] = (title(p), own + children, children)
        return out

    def idle(self) -> bool:
        return all(s[0].endswith("<idle>") for s in self.snapshot().values())

    def total(self) -> float:
        return sum(s[1] for s in self.snapshot().values())

    def _add(self, workload_title: str, cpu: float, child: float) -> None:
        key = workload_title.split(":", 1)[1].strip()
        self.per_task[key] = self.per_task.get(key, 0.0) + cpu
        self.per_task_child[key] = self.per_task_child.get(key, 0.0) + child

    def _run(self) -> None:
        state = self.snapshot()
        while not self._stop.is_set():
            time.sleep(self.interval)
            now = self.snapshot()
            for pid, (t, c, k) in now.items():
                t0, c0, k0 = state[pid]
                if t != t0:
                    if not t0.endswith("<idle>"):
                        self._add(t0, c - c0, k - k0)
                    state[pid] = (t, c, k)
        last = self.snapshot()
        for pid, (t0, c0, k0) in state.items():  # a workload still running at the end (none after the run's end)
            if not t0.endswith("<idle>"):
                self._add(t0, last[pid][1] - c0, last[pid][2] - k0)

    def __enter__(self) -> TaskMeter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def task_instances(stack: object, dag_id: str, run_id: str) -> list[dict[str, object]]:
    """The run's task instances from the REST API (read once: names and timeline both come from them)."""
    r = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    r.raise_for_status()
    return list(r.json()["task_instances"])


def task_names(tis: list[dict[str, object]]) -> dict[str, str]:
    """Task instance id (what a LocalExecutor worker's title shows) -> step name (``stages.drift`` -> ``drift``)."""
    return {str(ti["id"]): str(ti["task_id"]).removeprefix("stages.") for ti in tis}


def in_process(spec: Path, results_url: str) -> tuple[float, float, dict[str, float]]:
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

    best: tuple[float, float, dict[str, float]] = (float("inf"), float("inf"), {})
    for _ in range(2):  # the first one warms caches (model files, Postgres)
        steps: dict[str, float] = {}
        t0, c0 = time.perf_counter(), cpu()
        reg = pipeline.register(engine, spec, run_key=f"bench/{uuid.uuid4()}")
        steps["register"] = cpu() - c0
        for name in STAGE_NAMES:
            c = cpu()
            pipeline.run_stage(engine, reg.run_id, name)
            steps[name] = cpu() - c
        c = cpu()
        status = pipeline.decide(engine, reg.run_id)["status"]
        steps["decide"] = cpu() - c
        wall, total = time.perf_counter() - t0, cpu() - c0
        if total < best[1]:
            best = (wall, total, steps)
    print(f"in-process (modelcert run, warm): wall {best[0]:.1f} s, CPU {best[1]:.1f} s (decision {status})",
          flush=True)
    return best


@dataclass
class AirflowFigures:
    wall: float  # trigger -> verdict task done
    task_cpu: float  # the executor workers' CPU over the whole DAG run
    stack_cpu: float  # every process of the stack, trigger -> verdict
    per_step: dict[str, float]
    per_step_child: dict[str, float]
    verdict: str


def print_timeline(tis: list[dict[str, object]], epoch0: float) -> None:
    """Each task's queued, start and end time in seconds after the trigger (where the wall time goes)."""
    from datetime import datetime

    def at(value: object) -> str:
        if not value:
            return "    -"
        return f"{datetime.fromisoformat(str(value).replace('Z', '+00:00')).timestamp() - epoch0:5.1f}"

    rows = sorted(tis, key=lambda t: str(t.get("start_date") or "~"))
    print("  task timeline (s after trigger): queued / start / end")
    for t in rows:
        print(f"    {t['task_id']:<40} {at(t.get('queued_when'))} {at(t.get('start_date'))} {at(t.get('end_date'))}")


def through_airflow(spec: str, admin_url: str, preimport: bool, parallelism: int | None = None) -> AirflowFigures:
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
    extra = {"AIRFLOW__CORE__PARALLELISM": str(parallelism)} if parallelism else {}
    stack = AirflowStack(home=Path(tempfile.mkdtemp(prefix="bench-airflow-")), metadata_url=metadata_url,
                         results_url=results_url, extra_env=extra)
    label = ("pre-imported" if preimport else "no pre-import") + (f", parallelism {parallelism}" if parallelism else "")
    try:
        stack.migrate()
        stack.start(timeout=600)
        stack.wait_dag("certify_model", timeout=600)
        stack.wait_dag("signoff_model", timeout=600)
        r = stack.api("PATCH", "/api/v2/dags/signoff_model", json={"is_paused": True})
        r.raise_for_status()
        workers = executor_workers(stack.procs["scheduler"].pid)
        if not workers:
            raise RuntimeError(f"no '{WORKER_TITLE}' process under the scheduler")
        figures = None
        for attempt in range(2):  # the first run warms the workers (and their imports when not pre-imported)
            pids = [p.pid for p in stack.procs.values()]
            with TaskMeter(workers) as meter:
                w0, c0, t0 = meter.total(), tree_cpu(pids), time.perf_counter()
                epoch0 = time.time()
                run_id = stack.trigger("certify_model", {"spec": spec})

                def decided(run_id: str = run_id) -> str | None:
                    states = stack.task_states("certify_model", run_id)
                    done = [t for t in ("awaiting_signoff", "rejected", "error")
                            if states.get(t) in ("success", "failed")]
                    return done[0] if done else None

                verdict = stack.wait_for(decided, timeout=900, interval=0.5, what="the gate's verdict")
                wall, stack_cpu = time.perf_counter() - t0, tree_cpu(pids) - c0
                stack.wait_for(lambda run_id=run_id: stack.run_state("certify_model", run_id) in ("success", "failed")
                               and meter.idle(), timeout=600, interval=0.5, what="the DAG run's end")
                task_cpu = meter.total() - w0
            tis = task_instances(stack, "certify_model", run_id)
            names = task_names(tis)
            per_step: dict[str, float] = {}
            per_step_child: dict[str, float] = {}
            for workload, c in meter.per_task.items():
                step = names.get(workload, workload)
                per_step[step] = per_step.get(step, 0.0) + c
                per_step_child[step] = per_step_child.get(step, 0.0) + meter.per_task_child[workload]
            print(f"airflow ({label}) run {attempt + 1}: trigger -> {verdict} {wall:.1f} s, task CPU {task_cpu:.1f} s "
                  f"({len(meter.per_task)} tasks, {sum(meter.per_task.values()):.1f} s attributed), stack CPU "
                  f"{stack_cpu:.1f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
            print_timeline(tis, epoch0)
            figures = AirflowFigures(wall, task_cpu, stack_cpu, per_step, per_step_child, verdict)
        assert figures is not None
        return figures
    finally:
        stack.stop()
        shutil.rmtree(stack.home, ignore_errors=True)
        dispose_all()
        for db in (af, mc):
            admin_exec(admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="german_credit.yaml", help="a shipped spec (include/specs)")
    ap.add_argument("--modes", default="off,on", help="pre-import modes to run: off, on or off,on")
    ap.add_argument("--parallelism", type=int, default=None,
                    help="[core] parallelism of the stack (LocalExecutor worker processes; the dev stack's default 8)")
    ap.add_argument("--rows", type=int, default=None,
                    help="instead of --spec: Adult resampled (seeded) to this many rows, as bench_scale.py makes it "
                         "(a temporary folder); the per-task start-up is then small next to the stages' work")
    ap.add_argument("--admin-url", default=os.environ.get("MODELCERT_TEST_DATABASE_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("off", "on") for m in modes):
        ap.error(f"--modes {args.modes!r}: allowed off, on, off,on")
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from modelcert_devstack.airflow_stack import SPEC_DIR

    scratch: Path | None = None
    if args.rows:
        from bench_adult import OUT, build_workload
        from bench_scale import resample

        if not (OUT / "adult" / "spec.yaml").is_file():
            build_workload(OUT / "adult", 100)
        scratch = Path(tempfile.mkdtemp(prefix="modelcert-afbench-"))
        args.spec = str(resample(OUT / "adult", scratch, args.rows, "csv"))
    try:
        _measure(args, modes, SPEC_DIR)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _measure(args: argparse.Namespace, modes: list[str], spec_dir: Path) -> None:
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; spec {args.spec}", flush=True)
    figures = {mode: through_airflow(args.spec, args.admin_url, mode == "on", args.parallelism) for mode in modes}
    suffix = uuid.uuid4().hex[:8]
    db = f"bench_mc_{suffix}"
    admin_exec(args.admin_url, f'CREATE DATABASE "{db}"')
    try:
        from modelcert.db import migrate

        url = make_url(args.admin_url).set(database=db).render_as_string(hide_password=False)
        migrate.upgrade(url)
        wall, cpu, steps = in_process(spec_dir / args.spec, url)
    finally:
        from modelcert.db.session import dispose_all

        dispose_all()
        admin_exec(args.admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    print(f"\nspec {args.spec}, parallelism {args.parallelism or 'default (8)'}, load average now "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'mode':<24} {'wall':>9} {'task CPU':>9} {'stack CPU':>10}   ratio wall, task CPU (targets <= {TARGET}x)")
    print(f"{'in-process':<24} {wall:7.1f} s {cpu:7.1f} s")
    for mode, f in figures.items():
        name = "airflow, pre-imported" if mode == "on" else "airflow, no pre-import"
        ok = lambda r: "met" if r <= TARGET else "NOT met"  # noqa: E731
        print(f"{name:<24} {f.wall:7.1f} s {f.task_cpu:7.1f} s {f.stack_cpu:8.1f} s   x{f.wall / wall:.2f} "
              f"({ok(f.wall / wall)}), x{f.task_cpu / cpu:.2f} ({ok(f.task_cpu / cpu)}); stack CPU x"
              f"{f.stack_cpu / cpu:.2f}")
    names = list(steps) + sorted({s for f in figures.values() for s in f.per_step} - set(steps))
    print(f"\nCPU per step (s): {'step':<18} {'in-process':>10} "
          + " ".join(f"{'airflow ' + m:>12} {'(task proc)':>12}" for m in figures))
    for s in names:
        cells = " ".join(f"{figures[m].per_step.get(s, float('nan')):12.2f} "
                         f"{figures[m].per_step_child.get(s, float('nan')):12.2f}" for m in figures)
        print(f"                  {s:<18} {steps.get(s, float('nan')):10.2f} {cells}")
    print("(task proc: the part of a task's CPU spent in its task process; the rest is its supervise() in the "
          "worker)")


if __name__ == "__main__":
    main()
