"""Recertification against a real PostgreSQL, with small fake stages (the real ones have their own tests):
valid → checked, suspended, expired; missing current data; idempotent re-runs; re-certification after a
suspension; the ops overview and ``modelcert status --models``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select, update

from modelcert import pipeline, recertify, report
from modelcert.db.models import (
    AuditEvent,
    Certificate,
    CertificationRun,
    CheckResult,
    ModelVersion,
    StageResult,
)
from modelcert.db.session import reader, transaction
from modelcert.governance import Identity, record_decision
from modelcert.stages import STAGE_NAMES
from modelcert.stages.base import Check, StageOutcome, outcome
from modelcert.thresholds import Threshold
from tests.conftest import write_synthetic
from tests.lifecycle import digest_shown

pytestmark = pytest.mark.store
ROLES = {"model_validator": {"bob"}, "risk_officer": {"dave"}}
DS = "2026-11-30"
DAG = "recertify_models"


@dataclass
class FakeStage:
    """Judges the mean of column ``score`` of the data it is given (the current data in recertification)."""

    name: str
    library: str = ""
    boom: bool = False
    #: Judge on an interval mean ± 0.1 (three-way verdict) instead of the point value.
    interval: bool = False

    def run(self, ctx: Any) -> StageOutcome:
        if self.boom:
            raise ZeroDivisionError("boom")
        df = ctx.frame("current" if self.name == "drift" and ctx.spec.data.current else "test")
        value = float(df["score"].mean())
        judged = (Check.interval_judged("score", value, (value - 0.1, value + 0.1), Threshold(min=0.5), subject="all")
                  if self.interval else Check.judged("score", value, Threshold(min=0.5), subject="all"))
        return outcome(self.name, [judged, Check.info("rows", float(len(df)))], library="")


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeStage]:
    table = {name: FakeStage(name) for name in STAGE_NAMES}
    monkeypatch.setattr(pipeline, "get_stage", lambda name: table[name])
    monkeypatch.setattr(recertify, "get_stage", lambda name: table[name])
    return table


def frame(score: float, n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({"x": range(n), "sex": ["m", "f"] * (n // 2), "y": [0, 1, 1, 0] * (n // 4),
                         "pred": [1, 0] * (n // 2), "score": [score] * n})


def make_spec(tmp_path: Path, name: str, recert: dict[str, Any] | None, *, valid_for: str = "90d") -> Path:
    d = tmp_path / name
    d.mkdir()
    spec: dict[str, Any] = {
        "model": {"name": name, "version": "1.0"},
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}, "extra_columns": ["x", "score"]},
        "signoff": {"required": {"model_validator": 1, "risk_officer": 1}, "timeout": "1h"},
        "certificate": {"valid_for": valid_for},
    }
    path, full = write_synthetic(d, {"train": frame(0.9), "test": frame(0.9)}, spec)
    if recert is not None:
        import yaml

        full["recertification"] = recert
        path.write_text(yaml.safe_dump(full, sort_keys=False))
    (d / "prod").mkdir()
    return path


def certify(engine: Any, spec_path: Path, key: str | None = None) -> dict[str, Any]:
    """A certificate through the certification pipeline: stages, gate, two sign-offs, promote."""
    reg = pipeline.register(engine, spec_path, run_key=key or f"test/{spec_path.parent.name}", triggered_by="alice")
    for name in STAGE_NAMES:
        pipeline.run_stage(engine, reg.run_id, name)
    assert pipeline.decide(engine, reg.run_id)["status"] == "awaiting_signoff"
    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        record_decision(engine, reg.run_id, Identity(who, "test"), role=role, decision="approve", roles=ROLES,
                        evidence_digest=digest_shown(engine, reg.run_id))
    return pipeline.promote(engine, reg.run_id)


def write_prod(spec_path: Path, name: str, score: float, n: int = 40) -> Path:
    p = spec_path.parent / "prod" / name
    frame(score, n).to_csv(p, index=False)
    return p


def counts(engine: Any) -> dict[str, int]:
    """Rows per table; audit events without the evidence seals (a re-run that rewrites stage rows seals them)."""
    with reader(engine) as s:
        out = {m.__name__: int(s.execute(select(func.count()).select_from(m)).scalar_one())
               for m in (CertificationRun, StageResult, CheckResult, Certificate)}
        out["AuditEvent"] = int(s.execute(select(func.count()).select_from(AuditEvent)
                                          .where(AuditEvent.action != "rows_sealed")).scalar_one())
        return out


def actions(engine: Any, action: str) -> list[AuditEvent]:
    with reader(engine) as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


def recert(engine: Any, cert: dict[str, Any], *, run: str = "scheduled__2026-11-30", ds: str = DS,
           **kw: Any) -> dict[str, Any]:
    return recertify.recertify(engine, cert["certificate_id"], dag_id=DAG, airflow_run_id=run, ds=ds, **kw)


LABELS = {"current_data": "prod/batch_{ds}.csv", "labels_available": True}


def test_all_checks_hold_certificate_stays_valid_and_last_checked_moves(engine: Any, tmp_path: Path,
                                                                       fake_stages: Any) -> None:
    spec = make_spec(tmp_path, "good", LABELS)
    cert = certify(engine, spec)
    write_prod(spec, f"batch_{DS}.csv", 0.8)
    out = recert(engine, cert)
    assert out["status"] == "passed" and out["transition"] == "checked" and out["reasons"] == []
    assert out["stages"] == {s: "passed" for s in ("data_quality", "drift", "performance", "fairness")}
    assert out["current_data"].endswith(f"batch_{DS}.csv") and out["ds"] == DS
    with reader(engine) as s:
        c = s.get(Certificate, cert["certificate_id"])
        run = s.get(CertificationRun, out["run_id"])
        mv = s.get(ModelVersion, c.model_version_id)
    assert c.status == "valid" and c.last_checked_at is not None and mv.status == "certified"
    assert run.kind == "recertification" and run.certificate_id == c.id
    assert run.run_key == f"{DAG}/scheduled__2026-11-30/good/1.0"
    assert run.evidence["files"]["current"]["sha256"] and run.evidence["ds"] == DS
    assert run.evidence["files"]["reference"] == run.evidence["files"]["train"]  # certification-time reference
    assert [e.entity_id for e in actions(engine, "certificate_checked")] == [c.id]
    assert len(actions(engine, "recertification_passed")) == 1


def test_inconclusive_check_flags_the_certificate_but_never_suspends(engine: Any, tmp_path: Path,
                                                                    fake_stages: Any) -> None:
    """Recertification suspends only on fail: a check whose interval straddles its bound (0.52 ± 0.1 against
    ≥ 0.5) passes the run, names the check as needing attention, and flags the certificate in the ops view."""
    for stage in fake_stages.values():
        stage.interval = True
    spec = make_spec(tmp_path, "borderline", LABELS)
    cert = certify(engine, spec)
    write_prod(spec, f"batch_{DS}.csv", 0.52)
    out = recert(engine, cert)
    assert out["status"] == "passed" and out["certificate_status"] == "valid" and out["transition"] == "checked"
    assert out["reasons"] and all(r.startswith("attention: ") and "inconclusive" in r for r in out["reasons"])
    assert any("drift: score[all]" in r for r in out["reasons"]), out["reasons"]
    assert actions(engine, "certificate_suspended") == []
    [checked] = actions(engine, "certificate_checked")
    assert checked.payload["attention"] == out["reasons"]
    [row] = [m for m in report.model_overview(engine) if m["model"] == "borderline"]
    assert any("inconclusive check(s) need a look (not suspended)" in a for a in row["attention"]), row["attention"]
    # The same data judged on the point value alone would pass silently; below the interval it fails and suspends.
    write_prod(spec, "batch_2026-12-01.csv", 0.3)
    out = recert(engine, cert, run="scheduled__2026-12-01", ds="2026-12-01")
    assert out["status"] == "failed" and out["certificate_status"] == "suspended"


def test_failed_check_suspends_certificate_with_reasons(engine: Any, tmp_path: Path, fake_stages: Any) -> None:
    spec = make_spec(tmp_path, "drifty", LABELS)
    cert = certify(engine, spec)
    write_prod(spec, f"batch_{DS}.csv", 0.2)
    out = recert(engine, cert)
    assert out["status"] == "failed" and out["transition"] == "suspended"
    assert out["certificate_status"] == "suspended"
    assert any(r.startswith("drift: score[all]") for r in out["reasons"]), out["reasons"]
    with reader(engine) as s:
        c = s.get(Certificate, cert["certificate_id"])
        mv = s.get(ModelVersion, c.model_version_id)
    assert c.status == "suspended" and mv.status == "suspended"
    assert f"recertification on {DS} failed" in c.status_reason and "drift: score[all]" in c.status_reason
    [ev] = actions(engine, "certificate_suspended")
    assert ev.entity_id == c.id and ev.payload["recertification_run"] == out["run_id"]
    # The suspension is announced once (the Airflow asset event), however often one asks.
    [pending] = recertify.pending_announcements(engine, dag_id=DAG, airflow_run_id="scheduled__2026-11-30")
    assert pending["certificate_id"] == c.id and pending["model"] == "drifty" and pending["reasons"]
    assert recertify.record_announcement(engine, c.id, recertification_run_id=out["run_id"], channel="test")
    assert not recertify.record_announcement(engine, c.id, recertification_run_id=out["run_id"], channel="test")
    assert recertify.pending_announcements(engine, dag_id=DAG, airflow_run_id="scheduled__2026-11-30") == []
    # A later day's run does not recertify a suspended certificate.
    assert [t["certificate_id"] for t in recertify.find_targets(engine)] == []
    later = recert(engine, cert, run="scheduled__2026-12-01", ds="2026-12-01")
    assert later["status"] == "skipped" and "suspended" in later["note"]


def test_rerunning_the_same_day_changes_nothing_more(engine: Any, tmp_path: Path, fake_stages: Any) -> None:
    good = certify(engine, make_spec(tmp_path, "good", LABELS))
    write_prod(tmp_path / "good" / "spec.yaml", f"batch_{DS}.csv", 0.8)
    bad = certify(engine, make_spec(tmp_path, "bad", LABELS))
    write_prod(tmp_path / "bad" / "spec.yaml", f"batch_{DS}.csv", 0.2)
    first = {c["certificate_id"]: recert(engine, c) for c in (good, bad)}
    before = counts(engine)
    with reader(engine) as s:
        checked_at = s.get(Certificate, good["certificate_id"]).last_checked_at
    second = {c["certificate_id"]: recert(engine, c) for c in (good, bad)}
    assert counts(engine) == before
    assert len(actions(engine, "certificate_suspended")) == 1
    assert second[good["certificate_id"]]["status"] == "passed" and second[good["certificate_id"]]["transition"] is None
    assert second[bad["certificate_id"]]["status"] == "failed" and second[bad["certificate_id"]]["transition"] is None
    assert second[bad["certificate_id"]]["run_id"] == first[bad["certificate_id"]]["run_id"]
    with reader(engine) as s:
        assert s.get(Certificate, good["certificate_id"]).last_checked_at == checked_at


def test_missing_current_data_is_an_error_ops_see(engine: Any, tmp_path: Path, fake_stages: Any) -> None:
    spec = make_spec(tmp_path, "nodata", LABELS)
    cert = certify(engine, spec)
    out = recert(engine, cert)
    assert out["status"] == "error" and out["certificate_status"] == "valid"
    [reason] = out["reasons"]
    assert "recertification.current_data" in reason and f"batch_{DS}.csv" in reason and DS in reason
    with reader(engine) as s:
        run = s.get(CertificationRun, out["run_id"])
    assert run.status == "error" and run.kind == "recertification" and run.certificate_id == cert["certificate_id"]
    [ev] = actions(engine, "recertification_error")
    assert ev.entity_id == run.id and ev.payload["reasons"] == [reason]
    [row] = report.model_overview(engine)
    assert row["last_recertification"]["status"] == "error"
    assert any("could not check" in a for a in row["attention"]), row["attention"]
    before = counts(engine)
    assert recert(engine, cert)["status"] == "error"
    assert counts(engine) == before  # re-run: same row, no second audit event
    # The data arrives; clearing the task re-runs the same day and now judges it.
    write_prod(spec, f"batch_{DS}.csv", 0.8)
    again = recert(engine, cert)
    assert again["status"] == "passed" and again["run_id"] == out["run_id"] and again["transition"] == "checked"


def test_glob_picks_the_newest_batch_and_placeholders_fill(tmp_path: Path) -> None:
    import os
    import time

    (tmp_path / "prod").mkdir()
    old = tmp_path / "prod" / "b_2026-11-01.csv"
    new = tmp_path / "prod" / "b_2026-11-02.csv"
    old.write_text("x\n1\n")
    new.write_text("x\n1\n")
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert recertify.resolve_current_data("prod/b_*.csv", tmp_path, DS) == new
    assert recertify.resolve_current_data("prod/b_{ds}.csv", tmp_path, "2026-11-01") == old
    (tmp_path / "prod" / "c_20261101.csv").write_text("x\n1\n")
    assert recertify.resolve_current_data("prod/c_{ds_nodash}.csv", tmp_path, "2026-11-01").name == "c_20261101.csv"
    from modelcert.errors import DataError

    with pytest.raises(DataError, match=r"recertification.current_data: no current data: no file matches .*z_\*"):
        recertify.resolve_current_data("prod/z_*.csv", tmp_path, DS)
    with pytest.raises(DataError, match="does not exist"):
        recertify.resolve_current_data("prod/b_{ds}.csv", tmp_path, "2026-12-24")
    with pytest.raises(DataError, match="not YYYY-MM-DD"):
        recertify.resolve_current_data("prod/b_{ds}.csv", tmp_path, "yesterday")


def test_expiry_marks_certificates_past_validity(engine: Any, tmp_path: Path, fake_stages: Any) -> None:
    cert = certify(engine, make_spec(tmp_path, "old", LABELS))
    fresh = certify(engine, make_spec(tmp_path, "fresh", LABELS))
    with transaction(engine) as s:
        s.execute(update(Certificate).where(Certificate.id == cert["certificate_id"])
                  .values(valid_until=pipeline.utcnow() - timedelta(hours=1)))
    [row] = [r for r in report.model_overview(engine) if r["model"] == "old"]
    assert "certificate past its validity (not yet marked expired)" in row["attention"]
    assert [t["model"] for t in recertify.find_targets(engine)] == ["fresh"]
    expired = recertify.expire_due(engine)
    assert [e["certificate_id"] for e in expired] == [cert["certificate_id"]]
    assert recertify.expire_due(engine) == []  # idempotent
    with reader(engine) as s:
        c = s.get(Certificate, cert["certificate_id"])
        mv = s.get(ModelVersion, c.model_version_id)
        assert s.get(Certificate, fresh["certificate_id"]).status == "valid"
    assert c.status == "expired" and "validity ended" in c.status_reason and mv.status == "expired"
    assert [e.entity_id for e in actions(engine, "certificate_expired")] == [c.id]
    # A certificate that ran out between listing and recertifying is expired by the mapped task itself.
    with transaction(engine) as s:
        s.execute(update(Certificate).where(Certificate.id == fresh["certificate_id"])
                  .values(valid_until=pipeline.utcnow() - timedelta(minutes=1)))
    out = recert(engine, fresh)
    assert out["status"] == "expired"
    assert len(actions(engine, "certificate_expired")) == 2


def test_expiring_soon_is_flagged(engine: Any, tmp_path: Path, fake_stages: Any) -> None:
    certify(engine, make_spec(tmp_path, "soon", {**LABELS, "expiring_within_days": 30}, valid_for="20d"))
    certify(engine, make_spec(tmp_path, "later", LABELS, valid_for="90d"))
    targets = {t["model"]: t for t in recertify.find_targets(engine)}
    assert targets["soon"]["expiring_soon"] and targets["soon"]["expiring_within_days"] == 30
    assert not targets["later"]["expiring_soon"] and targets["later"]["configured"]


def test_suspended_model_is_valid_again_only_through_a_new_certification(engine: Any, tmp_path: Path,
                                                                         fake_stages: Any) -> None:
    spec = make_spec(tmp_path, "m", LABELS)
    first = certify(engine, spec, key="certify_model/run1")
    write_prod(spec, f"batch_{DS}.csv", 0.2)
    assert recert(engine, first)["status"] == "failed"
    # A new certification run with sign-off (the certify_model flow) issues a new certificate.
    second = certify(engine, spec, key="certify_model/run2")
    assert second["certificate_id"] != first["certificate_id"] and second["status"] == "valid"
    with reader(engine) as s:
        old = s.get(Certificate, first["certificate_id"])
        new = s.get(Certificate, second["certificate_id"])
        mv = s.get(ModelVersion, new.model_version_id)
    assert mv.status == "certified" and new.status == "valid"
    # The suspended certificate keeps its status and reason (history), and only the new one is recertified.
    assert old.status == "suspended" and "recertification" in old.status_reason
    assert [t["certificate_id"] for t in recertify.find_targets(engine)] == [new.id]
    [row] = report.model_overview(engine)
    assert row["certificate"]["certificate_id"] == new.id and row["certificate"]["status"] == "valid"
    assert row["attention"] == []
    # Fresh, healthy data the next day: the new certificate stays valid.
    write_prod(spec, "batch_2026-12-01.csv", 0.9)
    assert recert(engine, second, run="scheduled__2026-12-01", ds="2026-12-01")["status"] == "passed"


def test_without_labels_performance_and_fairness_are_not_applicable(engine: Any, tmp_path: Path,
                                                                    fake_stages: Any) -> None:
    spec = make_spec(tmp_path, "nolabels", {"current_data": "prod/batch_{ds}.csv"})
    cert = certify(engine, spec)
    write_prod(spec, f"batch_{DS}.csv", 0.8)
    out = recert(engine, cert)
    assert out["status"] == "passed"
    assert out["stages"] == {"data_quality": "passed", "drift": "passed", "performance": "not_applicable",
                             "fairness": "not_applicable"}
    with reader(engine) as s:
        reason = s.execute(select(StageResult.reason).where(StageResult.run_id == out["run_id"],
                                                            StageResult.stage == "fairness")).scalar_one()
    assert "labels_available" in reason


def test_not_configured_is_skipped_and_flagged(engine: Any, tmp_path: Path, fake_stages: Any) -> None:
    cert = certify(engine, make_spec(tmp_path, "plain", None))
    [target] = recertify.find_targets(engine)
    assert target["configured"] is False
    out = recert(engine, cert)
    assert out["status"] == "not_configured" and "no recertification section" in out["note"]
    [row] = report.model_overview(engine)
    assert row["recertification_configured"] is False
    assert any("no recertification configured" in a for a in row["attention"])


def test_threshold_overrides_are_what_recertification_judges(engine: Any, tmp_path: Path, fake_stages: Any) -> None:
    spec = make_spec(tmp_path, "strict", {**LABELS, "stages": ["drift", "performance"],
                                          "checks": {"drift": {"max_drifted_share": 0.05},
                                                     "performance": {"roc_auc": {"min": 0.9}}}})
    cert = certify(engine, spec)
    write_prod(spec, f"batch_{DS}.csv", 0.8)
    out = recert(engine, cert)
    assert set(out["stages"]) == {"drift", "performance"}
    with reader(engine) as s:
        run = s.get(CertificationRun, out["run_id"])
    assert run.spec["checks"]["drift"]["max_drifted_share"] == 0.05
    assert run.spec["checks"]["performance"]["roc_auc"]["min"] == 0.9
    assert run.spec["checks"]["performance"]["expected_calibration_error"]["max"] == 0.1  # kept from certification
    assert run.spec["data"]["test"] == out["current_data"] and run.spec["data"]["train"].endswith("train.csv")


def test_unexpected_stage_exception_is_recorded_then_raised(engine: Any, tmp_path: Path,
                                                            fake_stages: dict[str, FakeStage]) -> None:
    spec = make_spec(tmp_path, "boom", LABELS)
    cert = certify(engine, spec)
    write_prod(spec, f"batch_{DS}.csv", 0.8)
    fake_stages["fairness"].boom = True
    with pytest.raises(ZeroDivisionError):
        recert(engine, cert)
    with reader(engine) as s:
        run = s.execute(select(CertificationRun).where(CertificationRun.kind == "recertification")).scalar_one()
        statuses = dict(s.execute(select(StageResult.stage, StageResult.status)
                                  .where(StageResult.run_id == run.id)).all())
        c = s.get(Certificate, cert["certificate_id"])
    assert run.status == "error" and statuses["fairness"] == "error" and statuses["drift"] == "passed"
    assert c.status == "valid"  # an error never suspends (nor passes)
    fake_stages["fairness"].boom = False  # the retry
    assert recert(engine, cert)["status"] == "passed"


def test_status_models_in_the_terminal(engine: Any, db_url: str, tmp_path: Path, fake_stages: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main

    spec = make_spec(tmp_path, "shown", LABELS)
    cert = certify(engine, spec)
    write_prod(spec, f"batch_{DS}.csv", 0.2)
    recert(engine, cert)
    assert main(["--database-url", db_url, "status", "--models"]) == 0
    out = capsys.readouterr().out
    for text in ("shown", "suspended", "failed", "last recertification", "certificate suspended"):
        assert text in out, out
    assert main(["--database-url", db_url, "--json", "status", "--models"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["last_recertification"]["status"] == "failed" and row["last_recertification"]["ds"] == DS
    assert row["last_recertification"]["stages"]["drift"] == "failed"


def test_production_data_without_labels_real_data_quality(engine: Any, tmp_path: Path,
                                                          fake_stages: dict[str, Any]) -> None:
    """With the real data quality stage: the label column is absent by design, so its checks are dropped (and
    said so); everything else about the current data is still judged."""
    from modelcert.stages import get_stage as real_stage

    spec = make_spec(tmp_path, "unlabelled", {"current_data": "prod/batch_{ds}.csv", "stages": ["data_quality"]})
    cert = certify(engine, spec)
    fake_stages["data_quality"] = real_stage("data_quality")
    frame(0.8, 80).drop(columns=["y"]).to_csv(spec.parent / "prod" / f"batch_{DS}.csv", index=False)
    out = recert(engine, cert)
    assert out["status"] == "passed", out["reasons"]
    rep = report.run_report(engine, out["run_id"])
    [dq] = rep["stages"]
    assert "labels_available is false" in dq["summary"]["label_checks"]
    subjects = {c["subject"] for c in dq["checks"]}
    assert "test.y" not in subjects and "test.sex" in subjects and "test.pred" in subjects
    assert rep["kind"] == "recertification" and rep["checked_certificate_id"] == cert["certificate_id"]
    # A null in a protected attribute of the production data is still caught.
    broken = frame(0.8, 80).drop(columns=["y"])
    broken.loc[:9, "sex"] = None  # 12.5 % nulls, the default bound is 5 %
    broken.to_csv(spec.parent / "prod" / "batch_2026-12-01.csv", index=False)
    bad = recert(engine, cert, run="scheduled__2026-12-01", ds="2026-12-01")
    assert bad["status"] == "failed" and any("test.sex" in r for r in bad["reasons"]), bad["reasons"]


def test_summary_notices_a_model_whose_task_recorded_nothing(engine: Any, tmp_path: Path, fake_stages: Any) -> None:
    recorded = certify(engine, make_spec(tmp_path, "recorded", LABELS))
    silent = certify(engine, make_spec(tmp_path, "silent", LABELS))
    certify(engine, make_spec(tmp_path, "plain", None))
    write_prod(tmp_path / "recorded" / "spec.yaml", f"batch_{DS}.csv", 0.8)
    targets = recertify.find_targets(engine)
    recert(engine, recorded)
    outcomes = recertify.run_outcomes(engine, dag_id=DAG, airflow_run_id="scheduled__2026-11-30")
    assert [o["label"] for o in outcomes] == ["recorded 1.0"]
    missing = recertify.unrecorded_targets(engine, targets, outcomes)
    assert [t["certificate_id"] for t in missing] == [silent["certificate_id"]]  # "plain" has no plan: not missing


def test_recertify_in_process_from_the_cli(engine: Any, db_url: str, tmp_path: Path, fake_stages: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main

    good = make_spec(tmp_path, "good", LABELS)
    certify(engine, good)
    write_prod(good, f"batch_{DS}.csv", 0.8)
    certify(engine, make_spec(tmp_path, "late", LABELS))  # no batch for the day
    assert main(["--database-url", db_url, "recertify", "--ds", DS]) == 3
    out = capsys.readouterr().out
    assert "good 1.0: passed, certificate valid" in out
    assert "late 1.0: error, certificate valid" in out and "no current data" in out
    assert main(["--database-url", db_url, "recertify", "--ds", DS]) == 3  # the same day again: same rows
    with reader(engine) as s:
        assert s.execute(select(func.count()).select_from(CertificationRun)
                         .where(CertificationRun.kind == "recertification")).scalar_one() == 2
