"""A stage that evaluated none of its required checks is not passed (issue 7, item 6): the general rule in the
stage contract (``enforce_evaluated``), applied by ``pipeline.guarded`` to every stored outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from modelcert import pipeline
from modelcert.db.models import StageResult
from modelcert.db.session import reader
from modelcert.stages.base import Check, RequiredCheck, StageOutcome, enforce_evaluated, outcome
from modelcert.thresholds import Threshold
from tests.conftest import write_synthetic

RF_TRUSTED = ["sklearn.tree._tree.Tree"]


def _frames(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def one(m: int) -> pd.DataFrame:
        x1, x2 = rng.normal(0, 1, m), rng.normal(0, 1, m)
        return pd.DataFrame({"x1": x1, "x2": x2, "sex": rng.choice(["f", "m"], m),
                             "label": (x1 + x2 + rng.normal(0, 0.3, m) > 0).astype(int)})

    return {"train": one(200), "test": one(100)}


def _forest(frames: dict[str, pd.DataFrame]) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(
        frames["train"][["x1", "x2"]], frames["train"]["label"])


@pytest.fixture
def forest_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped policy plus the skops type a random forest needs (``Tree``), as a validator would review it."""
    import yaml

    from modelcert.policy import DEFAULT_POLICY_FILE, POLICY_ENV

    policy = yaml.safe_load(Path(DEFAULT_POLICY_FILE).read_text())
    policy["skops_trusted_types"] = [*policy.get("skops_trusted_types", []), *RF_TRUSTED]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    monkeypatch.setenv(POLICY_ENV, str(path))


def _robustness_spec(attacks: list[str]) -> dict[str, Any]:
    # Low tier: the risk policy floors no robustness bound there, so the permissive bounds below are allowed.
    return {"use_case": {"description": "unit test", "intended_use": "tests", "risk_tier": "low"},
            "model": {"features": ["x1", "x2"], "trusted_types": RF_TRUSTED},
            "data": {"label": "label", "protected_attributes": {"sex": {"privileged": ["m"]}}},
            "checks": {"robustness": {"attacks": attacks, "eps": [0.1], "sample_size": 20,
                                      "min_robust_accuracy": {"min": 0.0}, "max_flip_rate": {"max": 1.0}}}}


def test_contract_turns_an_unevaluated_pass_into_an_error() -> None:
    judged = Check.judged("score", 0.9, Threshold(min=0.5))
    needs = (RequiredCheck("score", "checks.x.score"), RequiredCheck("other", "checks.x.other", "nothing to measure"))
    out = outcome("x", [judged, Check.info("other", 1.0)], library="", requires=needs)
    assert out.status == "error"
    assert out.reason == "nothing to measure; checks.x.other was not evaluated"  # info is not a verdict
    assert out.summary["not_evaluated"] == ["checks.x.other"]
    assert out.checks == (judged, Check.info("other", 1.0))  # the measured evidence is kept
    # A failed stage stays failed (it is already not passed); a fully evaluated one passes.
    failed = outcome("x", [Check.judged("score", 0.1, Threshold(min=0.5))], library="", requires=needs)
    assert failed.status == "failed"
    assert outcome("x", [judged], library="", requires=needs[:1]).status == "passed"
    # Built by hand (not through outcome()): enforce_evaluated still applies.
    raw = StageOutcome(stage="x", status="passed", checks=(judged,), requires=needs)
    assert enforce_evaluated(raw).status == "error"


@pytest.mark.slow
def test_pgd_on_a_random_forest_is_an_error_not_a_pass(tmp_path: Path, forest_policy: None) -> None:
    """The probe's case: attacks: [pgd] on a random forest (no gradients) passed with min_robust_accuracy never
    evaluated. Now: error, naming what could not run and the threshold that was not evaluated."""
    from modelcert.context import EvalContext
    from modelcert.spec import load_spec
    from modelcert.stages.robustness import STAGE

    frames = _frames()
    path, _ = write_synthetic(tmp_path, frames, _robustness_spec(["pgd"]), _forest(frames))
    spec, _ = load_spec(path)
    out = STAGE.run(EvalContext(spec=spec, base_dir=path.parent))
    assert out.status == "error"
    assert out.reason.startswith("no requested attack could run on the model (pgd: RandomForestClassifier")
    assert out.reason.endswith("checks.robustness.min_robust_accuracy was not evaluated")
    assert [c.name for c in out.checks if c.passed is not None] == ["noise_flip_rate"]  # measured, and kept


@pytest.mark.slow
@pytest.mark.store
def test_pipeline_records_the_error_and_the_run_is_not_passed(engine: Any, tmp_path: Path, forest_policy: None) -> None:
    """Through the pipeline (guarded + save_stage + decide): the stage is stored as error with the reason and
    the run ends in error, never awaiting sign-off on an untested bound. HopSkipJump on the same forest runs,
    so the stage evaluates min_robust_accuracy and passes."""
    frames = _frames()
    path, _ = write_synthetic(tmp_path, frames, _robustness_spec(["pgd"]), _forest(frames))
    reg = pipeline.register(engine, path, run_key="rf/pgd", triggered_by="carol")
    summary = pipeline.run_stage(engine, reg.run_id, "robustness")
    assert summary["status"] == "error"
    with reader(engine) as s:
        stored = s.execute(select(StageResult).where(StageResult.run_id == reg.run_id)).scalar_one()
    assert stored.status == "error" and "min_robust_accuracy was not evaluated" in stored.reason
    decision = pipeline.decide(engine, reg.run_id)
    assert decision["status"] == "error"
    assert any(r.startswith("robustness: no requested attack could run") for r in decision["reasons"])

    (tmp_path / "hsj").mkdir()
    path2, _ = write_synthetic(tmp_path / "hsj", frames, _robustness_spec(["hop_skip_jump", "pgd"]), _forest(frames))
    reg2 = pipeline.register(engine, path2, run_key="rf/hsj", triggered_by="carol")
    assert pipeline.run_stage(engine, reg2.run_id, "robustness")["status"] == "passed"


def test_performance_declares_every_required_threshold(synthetic_ctx: Any) -> None:
    """A second stage under the same rule: performance requires a verdict for each required bound in
    checks.performance (a warning-only bound is not required), and a result missing one is an error."""
    from dataclasses import replace

    from modelcert.stages.performance import STAGE

    df = pd.DataFrame({"x": range(40), "sex": ["m", "f"] * 20, "y": [0, 1, 1, 0] * 10, "pred": [1, 0] * 20})
    ctx = synthetic_ctx({"test": df}, {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}},
        "checks": {"performance": {"accuracy": {"min": 0.0}, "recall": {"min": 0.0},
                                   "f1": {"min": 0.9, "required": False}}},
    })
    out = STAGE.run(ctx)
    assert out.status == "passed"
    assert {(r.name, r.field) for r in out.requires} == {("accuracy", "checks.performance.accuracy"),
                                                          ("recall", "checks.performance.recall")}
    without_recall = replace(out, checks=tuple(c for c in out.checks if c.name != "recall"))
    result, unexpected = pipeline.guarded("performance", STAGE.library, lambda: without_recall)
    assert unexpected is None
    assert (result.status, result.reason) == ("error", "checks.performance.recall was not evaluated")
