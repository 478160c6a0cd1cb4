"""Run the whole certify_model DAG with dag.test() on the demo data, against a real results DB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.store]
RUNNER = Path(__file__).with_name("dagtest_runner.py")


def run_dag(spec: str, db_url: str, home: Path, action: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(RUNNER), spec, db_url, str(home), action],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["output"] = out.stdout + out.stderr  # the task logs dag.test() printed
    return res


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("airflow_home")


def test_passing_model_is_certified_after_approvals(demo_build: Path, db_url: str, airflow_home: Path) -> None:
    res = run_dag("german_credit.yaml", db_url, airflow_home, "approve")
    assert res["run"]["status"] == "certified", res
    # certify_model ends at the decision and hands the run to signoff_model: one DAG run, deterministic id.
    assert res["dag_state"] == "success"
    ts = res["task_states"]
    assert ts["decide"] == "success" and ts["awaiting_signoff"] == "success" and ts["request_signoff"] == "success"
    assert ts["rejected"] == ts["error"] == "skipped"
    assert res["triggered"] == {"run_id": f"signoff__{res['run']['id']}", "conf": {"modelcert_run_id": res["run"]["id"]},
                                "count": 1}, res["triggered"]
    assert res["signoff"]["dag_state"] == "success"
    assert res["signoff"]["task_states"] == {"await_signoff": "success", "promote": "success"}
    notified = [event for action, event in res["run"]["audit"] if action == "notification_sent"]
    assert notified == ["awaiting_signoff", "certified"], res["run"]["audit"]
    assert all(ts[f"stages.{n}"] == "success" for n in
               ("data_quality", "performance", "robustness", "fairness", "drift", "compliance")), ts


def test_unfair_model_is_rejected_and_never_promoted(demo_build: Path, db_url: str, airflow_home: Path) -> None:
    res = run_dag("adult_income.yaml", db_url, airflow_home, "none")
    assert res["run"]["status"] == "rejected"
    assert any(r.startswith("fairness: disparate_impact[sex=Female]") for r in res["run"]["reasons"]), res["run"]["reasons"]
    ts = res["task_states"]
    # A verdict, not a crash: the stage that failed its checks and the gate are green, the grid shows the
    # `rejected` task, and the DAG run succeeds (red is kept for things that broke).
    assert res["dag_state"] == "success"
    assert ts["stages.fairness"] == "success" and ts["decide"] == "success" and ts["rejected"] == "success", ts
    assert ts["awaiting_signoff"] == ts["error"] == ts["request_signoff"] == "skipped", ts
    assert res["triggered"] is None and res["signoff"] is None  # never handed to sign-off
    assert "fairness FAILED" in res["output"] and "REJECTED (modelcert run" in res["output"]
    assert "AirflowFailException" not in res["output"]  # no verdict is raised as an exception


def test_audit_of_vendor_scores(demo_build: Path, db_url: str, airflow_home: Path) -> None:
    res = run_dag("compas_audit.yaml", db_url, airflow_home, "approve")
    ts = res["task_states"]
    assert ts["stages.robustness"] == "skipped"  # not applicable: predictions only, never silently skipped
    # The audit finds what ProPublica found: the vendor's scores fail the fairness checks on race.
    assert res["run"]["status"] == "rejected", res["run"]
    assert ts["rejected"] == "success" and res["dag_state"] == "success" and res["triggered"] is None
    assert any("fairness" in r and "[race=African-American]" in r for r in res["run"]["reasons"])


def test_decline_fails_the_sensor(demo_build: Path, db_url: str, airflow_home: Path) -> None:
    res = run_dag("german_credit.yaml", db_url, airflow_home, "decline")
    assert res["run"]["status"] == "declined"
    assert res["dag_state"] == "success"  # the certification itself passed the gate
    assert res["signoff"]["dag_state"] == "failed"
    assert res["signoff"]["task_states"] == {"await_signoff": "failed", "promote": "upstream_failed"}
    notified = [event for action, event in res["run"]["audit"] if action == "notification_sent"]
    assert notified == ["awaiting_signoff", "signoff_failed"], res["run"]["audit"]


def test_failed_registration_fails_fast_without_retrying_decide(db_url: str, airflow_home: Path) -> None:
    res = run_dag("no_such_spec.yaml", db_url, airflow_home, "none")
    ts = res["task_states"]
    assert res["dag_state"] == "failed"
    # register's refusal is final (recorded as error, not retried); decide routes to the `error` task, which fails
    # the DAG run: an error is red, unlike a rejection.
    assert ts["register"] == "failed" and ts["decide"] == "success" and ts["error"] == "failed", ts
    assert ts["rejected"] == ts["awaiting_signoff"] == ts["request_signoff"] == "skipped" and res["triggered"] is None
    assert res["run"]["status"] == "error" and "no_such_spec.yaml" in " ".join(res["run"]["reasons"])
