"""End to end against real Airflow processes (api-server, scheduler, dag-processor, triggerer) on PostgreSQL:
trigger through REST API v2 with a conf (the run id names the model), the run is handed to signoff_model,
approvers sign through the plugin API as logged-in Airflow users (the CLI with MODELCERT_API_URL), see the
certificate; the rejection path (a verdict, not a crash); and runs waiting for sign-off never hold back a new
certification."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from modelcert.db.models import Certificate, CertificationRun
from modelcert.db.session import get_engine, reader
from modelcert.pipeline import STAGE_NAMES
from modelcert_devstack.airflow_stack import AirflowStack
from tests.e2e.conftest import run_row

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.store]
REPO = Path(__file__).resolve().parents[2]
MODELCERT = str(Path(sys.executable).parent / "modelcert")


def _cli(stack: AirflowStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MODELCERT_DATABASE_URL=stack.results_url)
    env.pop("MODELCERT_API_URL", None)
    return subprocess.run([MODELCERT, *args], env=env, capture_output=True, text=True, timeout=120)


def _approve_as(stack: AirflowStack, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``modelcert approve`` through the plugin API, logged in to Airflow as ``user`` (the approver's path)."""
    env = dict(os.environ, MODELCERT_API_URL=stack.base_url)
    env.pop("MODELCERT_DATABASE_URL", None)
    return subprocess.run([MODELCERT, "approve", *args, "--user", user, "--password", stack.password(user)],
                          env=env, capture_output=True, text=True, timeout=120)


def _accept_blocking_findings(stack: AirflowStack, run_id: str, digest: str) -> list[str]:
    """``modelcert accept-risk`` through the plugin API for every role that must accept an open blocking finding
    of the run (e.g. an inconclusive fairness check under the high tier's accept_risk), as the demo holder of
    that role; nothing when no finding blocks. Returns the roles that accepted."""
    acceptors = {"risk_officer": "dave", "model_validator": "bob"}
    listed = stack.api("GET", f"/modelcert/api/runs/{run_id}/findings")
    assert listed.status_code == 200, listed.text
    roles = sorted({f["accept_role"] for f in listed.json() if f["blocking"] and f["status"] == "open"})
    env = dict(os.environ, MODELCERT_API_URL=stack.base_url)
    env.pop("MODELCERT_DATABASE_URL", None)
    for role in roles:
        who = acceptors[role]
        done = subprocess.run([MODELCERT, "accept-risk", run_id, "--all", "--role", role, "--evidence-digest", digest,
                               "--reason", "e2e: inconclusive on the demo's small test set", "--user", who,
                               "--password", stack.password(who)], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    return roles


def _task_log(stack: AirflowStack, dag_id: str, airflow_run: str, task_id: str) -> str:
    logs = (stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={airflow_run}" / f"task_id={task_id}").rglob("*.log")
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs))


def _diagnose(stack: AirflowStack) -> str:
    return "\n".join(f"--- {p}\n{stack.tail(p, 30)}" for p in ("scheduler", "triggerer", "api-server"))


def test_rest_trigger_signoff_via_cli_and_certificate(stack: AirflowStack) -> None:
    airflow_run = stack.trigger("certify_model", {"spec": "german_credit.yaml"})
    assert airflow_run.startswith("german-credit-lr_1.0.0__"), airflow_run  # the runs list names the model
    try:
        stack.wait_for(lambda: (r := run_row(stack, airflow_run)) is not None and r.status != "running",
                       timeout=420, what="the gate's decision")
        row = run_row(stack, airflow_run)
        assert row is not None and row.status == "awaiting_signoff", (row and row.reasons, _diagnose(stack))
        # The certification DAG run ends at the decision; the wait happens in one signoff_model DAG run.
        stack.wait_for(lambda: stack.run_state("certify_model", airflow_run) in ("success", "failed"),
                       timeout=120, what="the certification DAG run to end at the decision")
        assert stack.run_state("certify_model", airflow_run) == "success"
        states = stack.task_states("certify_model", airflow_run)
        assert states["awaiting_signoff"] == "success" and states["request_signoff"] == "success", states
        assert states["rejected"] == states["error"] == "skipped", states
        signoff_run = f"signoff__{row.id}"
        note = stack.api("GET", f"/api/v2/dags/signoff_model/dagRuns/{signoff_run}").json()["note"]
        assert note.startswith("german-credit-lr 1.0.0 awaits sign-off") and airflow_run in note, note
        stack.wait_for(lambda: _signoff_state(stack, signoff_run) == "deferred",
                       timeout=120, what="the sensor to defer (worker slot freed)")
        seen = ["--evidence-digest", row.evidence_digest]  # the digest the approvers reviewed
        _accept_blocking_findings(stack, row.id, row.evidence_digest)  # risk acceptance first, when policy needs it
        refused = _approve_as(stack, "alice", row.id, "--role", "model_validator", *seen)  # the submitter
        assert refused.returncode != 0 and "four-eyes" in refused.stderr, refused.stderr
        ok1 = _approve_as(stack, "bob", row.id, "--role", "model_validator", "--comment", "ok", *seen)
        assert ok1.returncode == 0, ok1.stderr
        assert stack.task_states("signoff_model", signoff_run)["promote"] in (None, "none", "scheduled", "queued")
        ok2 = _approve_as(stack, "dave", row.id, "--role", "risk_officer", *seen)
        assert ok2.returncode == 0, ok2.stderr
        stack.wait_for(lambda: stack.run_state("signoff_model", signoff_run) in ("success", "failed"),
                       timeout=180, what="the sign-off DAG run to finish")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(stack)}") from exc
    assert stack.run_state("signoff_model", signoff_run) == "success"
    states = stack.task_states("signoff_model", signoff_run)
    assert states["await_signoff"] == "success" and states["promote"] == "success"
    with reader(get_engine(stack.results_url)) as s:
        cert = s.execute(select(Certificate).where(Certificate.run_id == row.id)).scalar_one()
    assert cert.status == "valid" and cert.valid_until > cert.valid_from
    assert {a["approver"] for a in cert.approvers} == {"bob", "dave"}
    with reader(get_engine(stack.results_url)) as s:
        from modelcert.db.models import Signoff

        vias = {(so.approver, so.authenticated_via) for so in s.execute(select(Signoff).where(Signoff.run_id == row.id)).scalars()}
    assert vias == {("bob", "api:airflow-token"), ("dave", "api:airflow-token")}, vias  # signed as logged-in users
    events = stack.api("GET", "/api/v2/assets/events", params={"limit": 50}).json()["asset_events"]
    assert any(e["uri"].startswith("modelcert://certificates") and e["extra"].get("certificate_id") == cert.id
               for e in events), events
    report = _cli(stack, "--json", "report", row.id)
    assert report.returncode == 0 and '"status": "certified"' in report.stdout


def test_rejected_run_is_shown_as_rejected_and_never_promoted(stack: AirflowStack) -> None:
    airflow_run = stack.trigger("certify_model", {"spec": "adult_income.yaml"})
    assert airflow_run.startswith("adult-income-gbm_2.3.0__"), airflow_run
    try:
        stack.wait_for(lambda: stack.run_state("certify_model", airflow_run) in ("success", "failed"),
                       timeout=420, what="the rejected DAG run to finish")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(stack)}") from exc
    # A verdict, not a crash: nothing is red, the grid shows the `rejected` task, the logs say why in lines.
    assert stack.run_state("certify_model", airflow_run) == "success"
    states = stack.task_states("certify_model", airflow_run)
    assert states["stages.fairness"] == "success" and states["decide"] == "success" and states["rejected"] == "success"
    assert states["awaiting_signoff"] == states["error"] == states["request_signoff"] == "skipped", states
    assert not [t for t, s in states.items() if s == "failed"], states
    row = run_row(stack, airflow_run)
    assert row is not None and row.status == "rejected"
    assert any("disparate_impact[sex=Female]" in r for r in row.reasons)
    verdict_log = _task_log(stack, "certify_model", airflow_run, "rejected")
    assert "adult-income-gbm 2.3.0: REJECTED" in verdict_log and "disparate_impact[sex=Female]" in verdict_log
    fairness_log = _task_log(stack, "certify_model", airflow_run, "stages.fairness")
    assert "fairness FAILED" in fairness_log
    assert "Traceback" not in verdict_log + fairness_log and "AirflowFailException" not in verdict_log + fairness_log

    # Clearing and re-running the whole DAG run leaves exactly one result set per stage.
    before = _result_counts(stack, row.id, airflow_run)
    r = stack.api("POST", "/api/v2/dags/certify_model/clearTaskInstances",
                  json={"dry_run": False, "dag_run_id": airflow_run, "only_failed": False, "reset_dag_runs": True})
    assert r.status_code == 200, r.text
    stack.wait_for(lambda: stack.run_state("certify_model", airflow_run) in ("queued", "running"), timeout=60,
                   interval=0.5, what="the cleared run to restart")
    stack.wait_for(lambda: stack.run_state("certify_model", airflow_run) in ("success", "failed"),
                   timeout=420, what="the cleared run to finish again")
    after = _result_counts(stack, row.id, airflow_run)
    assert after == before and after["runs"] == 1 and after["stages"] == len(STAGE_NAMES), (before, after)
    assert run_row(stack, airflow_run).status == "rejected"


def _signoff_state(stack: AirflowStack, signoff_run: str) -> str | None:
    r = stack.api("GET", f"/api/v2/dags/signoff_model/dagRuns/{signoff_run}/taskInstances/await_signoff")
    return r.json().get("state") if r.status_code == 200 else None


def test_runs_awaiting_signoff_do_not_starve_new_certifications(stack: AirflowStack, tmp_path: Path,
                                                                verdicts: dict[str, str]) -> None:
    """Ten runs wait for sign-off, each with its signoff_model DAG run deferred in the triggerer; an eleventh
    certification still goes through certify_model at once. The ten are prepared in-process (fake stages, this
    process only) to keep the test cheap; the eleventh runs the real stages in Airflow."""
    from tests.lifecycle import run_all

    engine = get_engine(stack.results_url)
    details = stack.api("GET", "/api/v2/dags/certify_model/details").json()
    assert details["max_active_runs"] < 10  # ten waiting runs inside certify_model would have blocked it
    stack.wait_dag("signoff_model")
    waiting: list[str] = []
    for i in range(10):
        # One model version each: no run supersedes another, all ten really wait.
        run_id = run_all(engine, _tiny_passing_spec(tmp_path / f"w{i}", f"wait-{i}"),
                         key=f"e2e-waiting/{uuid.uuid4().hex}/{i}")
        r = stack.api("POST", "/api/v2/dags/signoff_model/dagRuns",
                      json={"dag_run_id": f"signoff__{run_id}", "logical_date": None,
                            "conf": {"modelcert_run_id": run_id}})
        assert r.status_code == 200, r.text
        waiting.append(f"signoff__{run_id}")
    eleventh = ""
    try:
        stack.wait_for(lambda: all(_signoff_state(stack, w) == "deferred" for w in waiting), timeout=240,
                       interval=3, what="ten sign-off sensors to defer")
        spec = _tiny_passing_spec(tmp_path / "eleventh", "eleventh")
        eleventh = stack.trigger("certify_model", {"spec": str(spec)})
        stack.wait_for(lambda: stack.run_state("certify_model", eleventh) in ("success", "failed"), timeout=300,
                       interval=3, what="the eleventh certification to be decided")
        row = run_row(stack, eleventh)
        assert row is not None and row.status == "awaiting_signoff", (row and row.reasons)
        assert stack.run_state("certify_model", eleventh) == "success"
        stack.wait_for(lambda: _signoff_state(stack, f"signoff__{row.id}") == "deferred", timeout=120,
                       what="the eleventh run's sign-off sensor to defer")
        # The ten are still waiting, untouched: nothing was queued behind them.
        assert [_signoff_state(stack, w) for w in waiting] == ["deferred"] * 10
        waiting.append(f"signoff__{row.id}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(stack)}") from exc
    finally:
        for w in waiting:  # stop waiting (the shared stack's triggerer serves the other e2e tests)
            stack.api("PATCH", f"/api/v2/dags/signoff_model/dagRuns/{w}", json={"state": "failed"})


def _tiny_passing_spec(tmp_path: Path, version: str) -> Path:
    """A predictions-only audit on 60 rows that passes every check (robustness and drift do not apply)."""
    import pandas as pd

    from tests.conftest import write_synthetic

    tmp_path.mkdir(parents=True, exist_ok=True)

    y = [0, 0, 1, 1] * 15
    df = pd.DataFrame({"sex": ["m", "f"] * 30, "y": y, "pred": y, "score": [0.95 if v else 0.05 for v in y]})
    path, _ = write_synthetic(tmp_path, {"test": df}, {
        "model": {"name": "tiny-audit", "version": version},
        "predictions": {"column": "pred", "positive": [1], "score_column": "score"},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}},
        "signoff": {"required": {"model_validator": 1, "risk_officer": 1}, "timeout": "1h"},
        # the high tier's policy requires the model-card declarations (the compliance stage checks them)
        "documentation": {key: f"{key} of the e2e test audit" for key in (
            "model_description", "algorithm_rationale", "limitations", "ethical_considerations",
            "training_data_description")},
    })
    return path


def _result_counts(stack: AirflowStack, run_id: str, airflow_run_id: str) -> dict[str, int]:
    from sqlalchemy import func

    from modelcert.db.models import CheckResult, StageResult

    with reader(get_engine(stack.results_url)) as s:
        return {
            "runs": s.execute(select(func.count()).select_from(CertificationRun)
                              .where(CertificationRun.airflow_run_id == airflow_run_id)).scalar_one(),
            "stages": s.execute(select(func.count()).select_from(StageResult).where(StageResult.run_id == run_id)).scalar_one(),
            "checks": s.execute(select(func.count()).select_from(CheckResult).join(StageResult)
                                .where(StageResult.run_id == run_id)).scalar_one(),
        }


def test_trigger_conf_is_validated_by_the_param_schema(stack: AirflowStack) -> None:
    r = stack.api("POST", "/api/v2/dags/certify_model/dagRuns", json={"logical_date": None, "conf": {"spec": "x.json"}})
    assert r.status_code == 400, r.text
