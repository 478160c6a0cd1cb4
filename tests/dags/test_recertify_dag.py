"""The recertify_models DAG with dag.test() over several certified models on real demo data (real stages), against a
real results DB: one mapped task per model, suspension with an asset event, missing data as a visible error,
expiry, and a re-run of the same day that changes nothing more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select, update

from modelcert.db.models import AuditEvent, Certificate, CertificationRun, CheckResult, ModelVersion, StageResult
from modelcert.db.session import get_engine, reader, transaction
from tests.lifecycle import certify_recorded

pytestmark = [pytest.mark.slow, pytest.mark.store]
RUNNER = Path(__file__).with_name("recertify_runner.py")
SPECS = Path(__file__).resolve().parents[2] / "include" / "specs"
ROLES = {"model_validator": {"bob"}, "risk_officer": {"dave"}}
DAY = "2026-11-30"


def run_dag(db_url: str, home: Path, day: str = DAY) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(RUNNER), db_url, str(home), day], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_spec(folder: Path, name: str, current_data: str | None) -> Path:
    """The German credit spec with absolute data paths, under another model name (same artifact)."""
    spec = yaml.safe_load((SPECS / "german_credit.yaml").read_text())
    spec["model"]["name"] = name
    spec["model"]["artifact"] = str((SPECS / spec["model"]["artifact"]).resolve())
    for role in ("train", "test", "current"):
        spec["data"][role] = str((SPECS / spec["data"][role]).resolve())
    if current_data is None:
        spec.pop("recertification")
    else:
        spec["recertification"] = {"current_data": current_data, "labels_available": True,
                                   "checks": {"drift": {"max_drifted_share": 0.25}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def certify(engine: Any, spec: Path) -> str:
    return certify_recorded(engine, spec, f"certify_model/{spec.stem}")


def counts(engine: Any) -> dict[str, int]:
    with reader(engine) as s:
        out = {m.__name__: int(s.execute(select(func.count()).select_from(m)).scalar_one())
               for m in (CertificationRun, StageResult, CheckResult, Certificate)}
        # Lifecycle events only: a re-run rewrites its stage rows (new ids and times), which the evidence seal
        # records as new `rows_sealed` events; what must not repeat is a transition (a second suspension …).
        out["AuditEvent"] = int(s.execute(select(func.count()).select_from(AuditEvent)
                                          .where(AuditEvent.action != "rows_sealed")).scalar_one())
        out["suspensions"] = int(s.execute(select(func.count()).select_from(AuditEvent)
                                           .where(AuditEvent.action == "certificate_suspended")).scalar_one())
    return out


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("airflow_home_recertify")


def test_recertification_fans_out_suspends_expires_and_is_idempotent(demo_build: Path, db_url: str, tmp_path: Path,
                                                                     airflow_home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert.demo.production import build_production
    from modelcert.spec import DATA_ROOTS_ENV

    # The specs live in tmp_path and name the shipped demo data and model: both folders are allowed data roots
    # (the dag.test() subprocess inherits the variable).
    monkeypatch.setenv(DATA_ROOTS_ENV, os.pathsep.join([str(tmp_path), str(SPECS.parent)]))

    prod = tmp_path / "prod"
    batches = build_production(prod, batch_date=DAY)
    batches["healthy"].path.rename(prod / f"healthy_{DAY}.csv")
    batches["long_loans"].path.rename(prod / f"drifted_{DAY}.csv")
    engine = get_engine(db_url)
    certs = {
        "gc-healthy": certify(engine, write_spec(tmp_path, "gc-healthy", "prod/healthy_{ds}.csv")),
        "gc-drifted": certify(engine, write_spec(tmp_path, "gc-drifted", "prod/drifted_{ds}.csv")),
        "gc-missing": certify(engine, write_spec(tmp_path, "gc-missing", "prod/missing_{ds}.csv")),
        "gc-plain": certify(engine, write_spec(tmp_path, "gc-plain", None)),
        "gc-expired": certify(engine, write_spec(tmp_path, "gc-expired", "prod/healthy_{ds}.csv")),
    }
    with transaction(engine) as s:
        s.execute(update(Certificate).where(Certificate.id == certs["gc-expired"])
                  .values(valid_until=datetime.now(UTC) - timedelta(days=1)))

    res = run_dag(db_url, airflow_home)
    ts = res["task_states"]
    labels = {label.split(" ")[0]: key for key, label in res["map_labels"].items() if key.startswith("recertify[")}
    assert set(labels) == {"gc-drifted", "gc-healthy", "gc-missing", "gc-plain"}, res  # one mapped task per model
    assert ts[labels["gc-healthy"]] == "success"
    assert ts[labels["gc-drifted"]] == "failed"
    assert ts[labels["gc-missing"]] == "failed"
    assert ts[labels["gc-plain"]] == "skipped"
    assert ts["expire_certificates"] == "success" and ts["find_certificates"] == "success"
    assert ts["announce_suspension[0]"] == "success"
    assert ts["summary"] == "failed" and res["dag_state"] == "failed"

    with reader(engine) as s:
        status = {mv.name: (c.status, mv.status, c.status_reason, c.last_checked_at) for c, mv in s.execute(
            select(Certificate, ModelVersion).join(ModelVersion, Certificate.model_version_id == ModelVersion.id)).all()}
        recerts = {r.run_key.split("/")[-2]: r for r in s.execute(
            select(CertificationRun).where(CertificationRun.kind == "recertification")).scalars()}
        stages = {(r.run_id, r.stage): r.status for r in s.execute(select(StageResult)).scalars()}
    assert status["gc-healthy"][:2] == ("valid", "certified") and status["gc-healthy"][3] is not None
    assert status["gc-drifted"][:2] == ("suspended", "suspended")
    assert "drift: drifted_share" in status["gc-drifted"][2], status["gc-drifted"][2]
    assert status["gc-missing"][:2] == ("valid", "certified")
    assert status["gc-expired"][:2] == ("expired", "expired")
    assert status["gc-plain"][:2] == ("valid", "certified")
    assert set(recerts) == {"gc-healthy", "gc-drifted", "gc-missing"}
    assert recerts["gc-healthy"].status == "passed"
    assert recerts["gc-drifted"].status == "failed"
    assert recerts["gc-missing"].status == "error"
    assert "missing_2026-11-30.csv" in recerts["gc-missing"].reasons[0]
    assert recerts["gc-drifted"].run_key == f"recertify_models/{res['run_id']}/gc-drifted/1.0.0"
    assert recerts["gc-drifted"].certificate_id == certs["gc-drifted"]
    for stage in ("data_quality", "drift", "performance", "fairness"):
        assert stages[(recerts["gc-healthy"].id, stage)] == "passed", stage
    assert stages[(recerts["gc-drifted"].id, "drift")] == "failed"

    [event] = [e for e in res["asset_events"] if e["uri"].startswith("modelcert://certificates/suspended")]
    assert event["extra"]["certificate_id"] == certs["gc-drifted"]
    assert event["extra"]["model"] == "gc-drifted" and event["extra"]["version"] == "1.0.0"
    assert event["extra"]["recertification_run_id"] == recerts["gc-drifted"].id and event["extra"]["reasons"]

    # The same day again (dag.test replaces the DAG run, same run id): nothing more changes.
    before = counts(engine)
    again = run_dag(db_url, airflow_home)
    assert again["run_id"] == res["run_id"]
    assert counts(engine) == before and before["suspensions"] == 1
    assert [e for e in again["asset_events"] if e["uri"].startswith("modelcert://certificates/suspended")] == [event]
    ts2 = again["task_states"]
    labels2 = {label.split(" ")[0]: key for key, label in again["map_labels"].items() if key.startswith("recertify[")}
    assert ts2[labels2["gc-healthy"]] == "success" and ts2[labels2["gc-missing"]] == "failed"
    # gc-drifted is suspended now: not listed again (only valid certificates are recertified)
    assert "gc-drifted" not in labels2
    assert ts2["summary"] == "failed"  # gc-missing still has no data
