"""The CLI end to end in-process: validate, run (no Airflow), status, report, approve, promote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelcert.cli import main

pytestmark = pytest.mark.store
SPECS = Path(__file__).resolve().parents[2] / "include" / "specs"


def test_validate_shipped_specs(demo_build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("german_credit", "adult_income", "compas_audit"):
        assert main(["validate", str(SPECS / f"{name}.yaml")]) == 0
    out = capsys.readouterr().out
    assert "evidence digest" in out and "audit of predictions" in out


def test_run_audit_in_process_then_status_and_report(demo_build: Path, db_url: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--database-url", db_url, "run", str(SPECS / "compas_audit.yaml")])
    out = capsys.readouterr().out
    assert code == 3, out  # rejected
    assert "robustness" in out and "not_applicable" in out
    assert "outcome: rejected" in out and "disparate_impact[race]" in out
    assert main(["--database-url", db_url, "--json", "status"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 1 and runs[0]["status"] == "rejected"
    assert runs[0]["stages"]["robustness"] == "not_applicable" and runs[0]["stages"]["fairness"] == "failed"
    run_id = runs[0]["run_id"]
    assert main(["--database-url", db_url, "--json", "report", run_id]) == 0
    rep = json.loads(capsys.readouterr().out)
    fairness = next(s for s in rep["stages"] if s["stage"] == "fairness")
    first = fairness["checks"][0]
    assert first["passed"] is False and first["required"] is True  # failed checks first
    assert first["threshold"] and first["value"] is not None
    assert rep["evidence"]["files"]["test"]["sha256"] and len(rep["evidence_digest"]) == 64
    assert main(["--database-url", db_url, "report", run_id]) == 0
    human = capsys.readouterr().out
    assert "FAIL" in human and "disparate_impact[race]" in human


def test_approve_refusal_exit_code(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--database-url", db_url, "approve", "00000000-0000-0000-0000-000000000000",
                 "--approver", "bob", "--role", "model_validator"])
    assert code == 2
    assert "no certification run with id" in capsys.readouterr().err
