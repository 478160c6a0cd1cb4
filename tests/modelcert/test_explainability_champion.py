"""Champion vs challenger against a real results database: the committed German credit model is certified (the
champion); a new version's run records it in its evidence at registration and the explainability stage compares
the two with a paired bootstrap. A degraded challenger (trained on 5% of the data) fails; an identical retrain
passes or is inconclusive, never fails."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sqlalchemy import select

from modelcert import pipeline
from modelcert.db.models import CertificationRun, CheckResult, StageResult
from modelcert.db.session import reader
from modelcert.evidence import Evidence
from tests.conftest import SPECS
from tests.lifecycle import certify_recorded
from tests.modelcert.test_explainability import german_spec

pytestmark = [pytest.mark.store]
CHAMPION_SHA = yaml.safe_load((SPECS / "german_credit.yaml").read_text())["model"]["sha256"]


def _challenger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: Any, version: str) -> Path:
    from modelcert.demo.build import dump_skops_reproducibly

    artifact = tmp_path / f"german-{version}.skops"
    digest = dump_skops_reproducibly(model, artifact)
    shipped = yaml.safe_load((SPECS / "german_credit.yaml").read_text())["model"]
    path = german_spec(tmp_path, monkeypatch,
                       model={**shipped, "version": version, "artifact": str(artifact), "sha256": digest})
    return path


def _compare(engine: Any, spec: Path, key: str) -> tuple[dict[str, Any], list[CheckResult], StageResult]:
    reg = pipeline.register(engine, spec, run_key=key, triggered_by="alice")
    pipeline.run_stage(engine, reg.run_id, "explainability")
    with reader(engine) as s:
        run = s.get(CertificationRun, reg.run_id)
        assert run is not None
        sr = s.execute(select(StageResult).where(StageResult.run_id == reg.run_id,
                                                 StageResult.stage == "explainability")).scalar_one()
        checks = list(s.execute(select(CheckResult).where(CheckResult.stage_result_id == sr.id)
                                .order_by(CheckResult.position)).scalars())
        evidence = dict(run.evidence)
        # the champion is part of what the evidence digest covers
        ev = Evidence(spec_sha256=evidence["spec_sha256"], files=evidence["files"], policy=evidence["policy"],
                      champion=evidence["champion"])
        assert ev.digest == run.evidence_digest
        assert Evidence(spec_sha256=evidence["spec_sha256"], files=evidence["files"],
                        policy=evidence["policy"]).digest != run.evidence_digest
    return evidence, checks, sr


def _verdicts(checks: list[CheckResult], name: str) -> dict[str, str]:
    return {c.subject: c.detail["verdict"] for c in checks if c.name == name}


@pytest.fixture
def champion(engine: Any, demo_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MODELCERT_DATA_ROOTS", str(SPECS.parent))
    return certify_recorded(engine, SPECS / "german_credit.yaml", "certify_model/german-champion")


def test_degraded_challenger_fails_against_the_certified_champion(engine: Any, champion: str, demo_build: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LogisticRegression

    from modelcert.demo.build import GERMAN_CATEGORICAL, GERMAN_NUMERIC, tabular_pipeline

    train = pd.read_csv(demo_build / "german_credit_train.csv")
    few = train.sample(frac=0.05, random_state=0)
    model = tabular_pipeline(GERMAN_NUMERIC, GERMAN_CATEGORICAL, LogisticRegression(C=0.5, max_iter=2000))
    model.fit(few[GERMAN_NUMERIC + GERMAN_CATEGORICAL], few["credit_risk"])
    evidence, checks, sr = _compare(engine, _challenger(tmp_path, monkeypatch, model, "2.0.0"), "test/degraded")
    ref = evidence["champion"]
    assert ref["version"] == "1.0.0" and ref["sha256"] == CHAMPION_SHA and ref["certificate_id"] == champion
    assert _verdicts(checks, "roc_auc_max_drop") == {"champion 1.0.0": "fail"}
    auc = next(c for c in checks if c.name == "roc_auc_max_drop")
    assert auc.passed is False and auc.value > 0.01 and auc.detail["ci95"][0] > 0.01
    assert auc.detail["reference"] - auc.detail["challenger"] == pytest.approx(auc.value)
    assert sr.status == "failed"
    table = sr.summary["comparison"]["table"]
    assert {row["metric"] for row in table} == {"roc_auc", "accuracy", "impact_ratio"}
    assert {row["subject"] for row in table if row["metric"] == "impact_ratio"} == {"champion 1.0.0: sex",
                                                                                    "champion 1.0.0: age"}


def test_identical_retrain_never_fails(engine: Any, champion: str, demo_build: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert.demo.build import train_german

    model = train_german(pd.read_csv(demo_build / "german_credit_train.csv"))
    evidence, checks, sr = _compare(engine, _challenger(tmp_path, monkeypatch, model, "1.0.1"), "test/retrain")
    assert evidence["champion"]["version"] == "1.0.0"
    judged = [c for c in checks if c.name.endswith("_max_drop")]
    assert judged and all(c.detail["verdict"] in ("pass", "inconclusive") for c in judged), [
        (c.name, c.subject, c.detail["verdict"], c.detail["ci95"]) for c in judged]
    assert sr.status != "error", sr.reason


def test_no_champion_no_comparison_and_the_digest_is_unchanged(engine: Any, demo_build: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCERT_DATA_ROOTS", str(SPECS.parent))
    reg = pipeline.register(engine, SPECS / "german_credit.yaml", run_key="test/first", triggered_by="alice")
    with reader(engine) as s:
        run = s.get(CertificationRun, reg.run_id)
        assert run is not None and "champion" not in run.evidence
    out = pipeline.run_stage(engine, reg.run_id, "explainability")
    assert out["status"] in ("passed", "failed"), out


def test_champion_artifact_changed_since_certification_is_an_error(engine: Any, champion: str, demo_build: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The champion is loaded only after its bytes hash to the sha256 its certified run recorded."""
    from sqlalchemy import update

    from modelcert.db.session import transaction
    from modelcert.demo.build import train_german

    model = train_german(pd.read_csv(demo_build / "german_credit_train.csv"))
    reg = pipeline.register(engine, _challenger(tmp_path, monkeypatch, model, "1.0.2"), run_key="test/tampered",
                            triggered_by="alice")
    with transaction(engine) as s:
        run = s.get(CertificationRun, reg.run_id)
        assert run is not None
        ev = dict(run.evidence)
        ev["champion"] = {**ev["champion"], "sha256": hashlib.sha256(b"other bytes").hexdigest()}
        s.execute(update(CertificationRun).where(CertificationRun.id == reg.run_id).values(evidence=ev))
    out = pipeline.run_stage(engine, reg.run_id, "explainability")
    assert out["status"] == "error" and "champion 1.0.0 cannot be loaded" in out["reason"], out
    assert "hashes to" in out["reason"]
