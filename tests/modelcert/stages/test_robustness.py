"""Robustness stage: real ART attacks (HopSkipJump, FGSM, PGD) on synthetic models and on the demo models."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from modelcert.stages import get_stage
from modelcert.stages.robustness import STAGE, LockstepOracle, evaluate

HGB_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


# ------------------------------------------------------------------------------------------------ helpers
def _frames(n: int = 300, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A seeded problem: label = x1 + x2 (+ noise) > 0, plus a frozen numeric, a protected numeric (age) and a
    categorical column that also carry signal."""
    rng = np.random.default_rng(seed)

    def one(m: int) -> pd.DataFrame:
        x1, x2, x3 = rng.normal(0, 1, m), rng.normal(0, 1, m), rng.normal(0, 1, m)
        age = rng.integers(18, 80, m)
        color = rng.choice(["red", "green", "blue"], m)
        score = x1 + x2 + 0.5 * x3 + 0.02 * (age - 50) + np.where(color == "red", 0.5, 0.0) + rng.normal(0, 0.3, m)
        return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "age": age, "color": color,
                             "sex": rng.choice(["f", "m"], m), "label": (score > 0).astype(int)})

    return {"train": one(n), "test": one(n // 2)}


def _pipeline(numeric: list[str], categorical: list[str], estimator: object, frame: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = [("num", StandardScaler(), numeric)]
    if categorical:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical))
    model = Pipeline([("preprocess", ColumnTransformer(parts)), ("model", estimator)])
    return model.fit(frame[numeric + categorical], frame["label"])


def _lr(frame: pd.DataFrame, numeric: list[str], categorical: list[str] = ()):  # type: ignore[assignment]
    from sklearn.linear_model import LogisticRegression

    return _pipeline(numeric, list(categorical), LogisticRegression(max_iter=1000), frame)


def _spec(features: list[str], robustness: dict, *, protected: dict | None = None, model: dict | None = None) -> dict:
    return {
        "model": {"features": features, **(model or {})},
        "data": {"label": "label", "protected_attributes": protected or {"sex": {"privileged": ["m"]}}},
        "checks": {"robustness": robustness},
    }


def _checks(out, name: str) -> dict[str, object]:
    return {c.subject: c for c in out.checks if c.name == name}


def _assert_robust_accuracy_is_consistent(out, subject: str) -> object:
    """What a robust accuracy must satisfy whatever the model: robust rows are correctly classified rows that no
    attack flipped (so never above clean accuracy), the verdict is the threshold applied to the value, and the
    stage passes exactly when every required check does."""
    check = _checks(out, "robust_accuracy")[subject]
    d = check.detail
    assert check.value == d["robust"] / d["sample_size"]
    assert d["robust"] <= d["correct"] and check.value <= d["clean_accuracy"]
    assert d["clean_accuracy"] == _checks(out, "clean_accuracy")[""].value
    assert check.passed == (check.value >= check.threshold["min"])
    assert out.status == ("passed" if all(c.passed is not False for c in out.checks if c.required) else "failed")
    return check


# ------------------------------------------------------------------------------------------------ contract
def test_registered_with_art_library() -> None:
    stage = get_stage("robustness")
    assert stage is STAGE
    assert stage.name == "robustness"
    assert stage.library == "adversarial-robustness-toolbox"


def test_audit_spec_is_not_applicable(synthetic_ctx) -> None:
    test = _frames()["test"].assign(pred=lambda d: d["label"])
    ctx = synthetic_ctx({"test": test}, {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "label", "protected_attributes": {"sex": {"privileged": ["m"]}}},
    })
    out = STAGE.run(ctx)
    assert out.status == "not_applicable"
    assert out.reason == "no model artifact: attacks need the model itself (predictions-only audit)"
    assert out.library_version  # ART's installed version is recorded


def test_no_allowed_feature_is_not_applicable(synthetic_ctx) -> None:
    frames = _frames()
    model = _lr(frames["train"], ["x3", "age"], ["color"])
    ctx = synthetic_ctx(frames, _spec(["x3", "age", "color"], {"frozen_features": ["x3"]},
                                      protected={"age": {"privileged": {"min": 25}}}), model)
    out = STAGE.run(ctx)
    assert out.status == "not_applicable"
    assert "no feature may be perturbed" in out.reason
    for why in ("x3: frozen", "age: protected attribute", "color: not numeric"):
        assert why in out.reason


# ------------------------------------------------------------------------------------------------ attacks
def test_large_eps_breaks_a_linear_model_tiny_eps_does_not(synthetic_ctx) -> None:
    frames = _frames()
    model = _lr(frames["train"], ["x1", "x2"])
    ctx = synthetic_ctx(frames, _spec(["x1", "x2"], {
        "attacks": ["hop_skip_jump", "fgsm"], "eps": [0.001, 0.5], "sample_size": 60,
        "min_robust_accuracy": {"min": 0.5},
    }), model)
    out = STAGE.run(ctx)
    robust = _checks(out, "robust_accuracy")
    success = _checks(out, "attack_success_rate")
    clean = _checks(out, "clean_accuracy")[""].value
    assert clean > 0.8
    for attack in ("hop_skip_jump", "fgsm"):
        tiny, large = robust[f"{attack} eps=0.001"], robust[f"{attack} eps=0.5"]
        assert tiny.value >= clean - 0.05, attack
        assert large.value < clean - 0.3, attack
        assert tiny.passed and not large.passed
        assert success[f"{attack} eps=0.5"].value > 0.5
        assert success[f"{attack} eps=0.5"].passed is None  # informational
        assert isinstance(large.value, float)
    assert out.status == "failed"
    assert [c.subject for c in out.failures] == ["hop_skip_jump eps=0.5", "fgsm eps=0.5"]
    assert out.summary["attacks_run"] == ["hop_skip_jump", "fgsm"]
    assert set(out.summary["runtime_s"]) >= {"hop_skip_jump", "fgsm", "noise", "total"}
    assert out.summary["sample_size"] == 60


def test_frozen_protected_and_categorical_features_never_change(synthetic_ctx) -> None:
    frames = _frames()
    model = _lr(frames["train"], ["x1", "x2", "x3", "age"], ["color"])
    ctx = synthetic_ctx(frames, _spec(["x1", "x2", "x3", "age", "color"], {
        "attacks": ["hop_skip_jump", "fgsm", "pgd"], "eps": [0.2], "sample_size": 40, "frozen_features": ["x3"],
    }, protected={"age": {"privileged": {"min": 25}}}), model)
    report = evaluate(ctx)
    assert report.space.features == ["x1", "x2"]
    assert report.summary["excluded_features"] == {
        "x3": "frozen (checks.robustness.frozen_features)", "age": "protected attribute", "color": "not numeric"}
    sample = report.sample
    lo, hi, span = report.space.lo, report.space.hi, report.space.span
    assert set(report.attacks) == {"hop_skip_jump", "fgsm", "pgd"}
    for name, res in report.attacks.items():
        adv = res.adversarial[0.2]
        assert list(adv.columns) == list(sample.columns)
        for col in ("x3", "age", "color"):
            assert adv[col].tolist() == sample[col].tolist(), (name, col)
        moved = adv[["x1", "x2"]].to_numpy() - sample[["x1", "x2"]].to_numpy()
        assert (np.abs(moved) > 0).any(), name  # the attack did perturb the allowed features
        assert (np.abs(moved) <= 0.2 * span + 1e-9).all(), name  # within the L-inf budget
        assert (adv[["x1", "x2"]].to_numpy() >= lo - 1e-9).all() and (adv[["x1", "x2"]].to_numpy() <= hi + 1e-9).all()
        # The recorded verdicts match the model's predictions on the adversarial rows.
        pred = (ctx.score_features(adv) >= 0.5).astype(int)
        assert np.array_equal(res.robust[0.2], res.correct & (pred == report.labels)), name


def test_hgb_has_no_gradients_fgsm_is_recorded_not_applicable_hsj_still_runs(synthetic_ctx) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    frames = _frames()
    model = _pipeline(["x1", "x2"], ["color"], HistGradientBoostingClassifier(max_iter=30, random_state=0),
                      frames["train"])
    ctx = synthetic_ctx(frames, _spec(["x1", "x2", "color"], {
        "attacks": ["hop_skip_jump", "fgsm", "pgd"], "eps": [0.05], "sample_size": 30,
    }, model={"trusted_types": HGB_TRUSTED}), model)
    out = STAGE.run(ctx)
    na = _checks(out, "attack_not_applicable")
    assert set(na) == {"fgsm", "pgd"}
    assert na["fgsm"].message == "fgsm not applicable: HistGradientBoostingClassifier exposes no gradients to ART"
    assert na["fgsm"].passed is None and not na["fgsm"].required and na["fgsm"].value is None
    robust = _checks(out, "robust_accuracy")
    assert list(robust) == ["hop_skip_jump eps=0.05"]
    _assert_robust_accuracy_is_consistent(out, "hop_skip_jump eps=0.05")
    assert out.summary["attacks_run"] == ["hop_skip_jump"]
    assert out.summary["attacks_not_applicable"]["fgsm"] == "HistGradientBoostingClassifier exposes no gradients to ART"


def test_non_affine_preprocessing_makes_gradient_attack_not_applicable(synthetic_ctx) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    frames = _frames()
    model = make_pipeline(PolynomialFeatures(2), LogisticRegression(max_iter=1000))
    model.fit(frames["train"][["x1", "x2"]], frames["train"]["label"])
    ctx = synthetic_ctx(frames, _spec(["x1", "x2"], {"attacks": ["fgsm"], "eps": [0.1], "sample_size": 20}), model)
    out = STAGE.run(ctx)
    na = _checks(out, "attack_not_applicable")
    assert "does not map feature 'x1' onto one transformed column" in na["fgsm"].message
    assert not _checks(out, "robust_accuracy")


def test_pgd_is_at_least_as_strong_as_fgsm(synthetic_ctx) -> None:
    frames = _frames()
    model = _lr(frames["train"], ["x1", "x2"])
    ctx = synthetic_ctx(frames, _spec(["x1", "x2"], {"attacks": ["fgsm", "pgd"], "eps": [0.1], "sample_size": 80}),
                        model)
    robust = _checks(STAGE.run(ctx), "robust_accuracy")
    assert robust["pgd eps=0.1"].value <= robust["fgsm eps=0.1"].value


def test_results_are_reproducible(synthetic_ctx) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    frames = _frames()
    model = _pipeline(["x1", "x2"], [], HistGradientBoostingClassifier(max_iter=30, random_state=0), frames["train"])
    ctx = synthetic_ctx(frames, _spec(["x1", "x2"], {"attacks": ["hop_skip_jump"], "eps": [0.02, 0.1],
                                                      "sample_size": 30}, model={"trusted_types": HGB_TRUSTED}), model)
    first, second = evaluate(ctx), evaluate(ctx)
    assert np.array_equal(first.attacks["hop_skip_jump"].distance, second.attacks["hop_skip_jump"].distance)
    state = np.random.get_state()
    evaluate(ctx)
    assert np.array_equal(np.random.get_state()[1], state[1])  # the global RNG is given back untouched


# ------------------------------------------------------------------------------------------------ noise
def test_noise_flip_rate_zero_for_tiny_sigma_positive_for_large(synthetic_ctx) -> None:
    frames = _frames()
    model = _lr(frames["train"], ["x1", "x2"], ["color"])
    ctx = synthetic_ctx(frames, _spec(["x1", "x2", "color"], {
        "attacks": [], "sample_size": 100, "noise_sigma": [1e-6, 3.0], "max_flip_rate": {"max": 0.1},
    }), model)
    out = STAGE.run(ctx)
    flips = _checks(out, "noise_flip_rate")
    assert flips["sigma=1e-06"].value == 0.0 and flips["sigma=1e-06"].passed
    assert flips["sigma=3"].value > 0.1 and flips["sigma=3"].passed is False
    acc = _checks(out, "noise_accuracy")
    assert acc["sigma=3"].passed is None and acc["sigma=3"].value < acc["sigma=1e-06"].value
    assert out.status == "failed"
    assert out.summary["attacks_run"] == []


# ------------------------------------------------------------------------------------------------ oracle
def test_lockstep_oracle_batches_queries_and_propagates_errors() -> None:
    calls: list[int] = []

    def answer(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
        calls.append(len(queries))
        return np.stack([1 - queries[:, 0], queries[:, 0]], axis=1)

    def job(n: int):
        def run(predict):
            return [predict(np.full((n, 1), float(i % 2)))[0, 1] for i in range(3)]
        return run

    oracle = LockstepOracle(answer)
    out = oracle.run({i: job(i + 1) for i in range(5)})
    assert out == {i: [0.0, 1.0, 0.0] for i in range(5)}
    assert calls == [15, 15, 15]  # one model call per round, all rows' queries together

    def boom(predict):
        predict(np.zeros((1, 1)))
        raise RuntimeError("attack failed")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="attack failed"):
        LockstepOracle(answer).run({0: job(2), 1: boom, 2: job(2)})
    assert threading.active_count() <= before  # no thread left behind


# ------------------------------------------------------------------------------------------------ demo data
@pytest.mark.slow
def test_german_credit_runs_hsj_and_fgsm_and_passes(demo_ctx) -> None:
    ctx = demo_ctx("german_credit")
    out = STAGE.run(ctx)
    assert out.status == "passed", [c.message for c in out.failures]
    robust = _checks(out, "robust_accuracy")
    assert set(robust) == {"hop_skip_jump eps=0.05", "hop_skip_jump eps=0.1", "fgsm eps=0.05", "fgsm eps=0.1"}
    for c in robust.values():
        assert c.threshold == {"min": 0.5, "required": True}
        assert 0.5 <= c.value <= 1.0
    clean = _checks(out, "clean_accuracy")[""].value
    assert all(c.value <= clean for c in robust.values())
    assert set(_checks(out, "attack_success_rate")) == set(robust)
    assert _checks(out, "noise_flip_rate")["sigma=0.1"].passed
    s = out.summary
    assert s["sample_size"] == 100
    assert s["allowed_features"] == ["duration_months", "credit_amount", "installment_rate", "residence_since",
                                     "existing_credits", "num_dependents"]
    assert s["attacks_run"] == ["hop_skip_jump", "fgsm"]
    assert s["runtime_s"]["total"] < 60  # ~3-5 s on 2 cores; generous against a loaded CI machine
    assert out.library_version == "1.20.1"


@pytest.mark.slow
def test_adult_income_hsj_on_gradient_boosting(demo_ctx) -> None:
    ctx = demo_ctx("adult_income")
    out = STAGE.run(ctx)
    robust = _checks(out, "robust_accuracy")
    assert list(robust) == ["hop_skip_jump eps=0.05"]
    check = _assert_robust_accuracy_is_consistent(out, "hop_skip_jump eps=0.05")
    # The demo's gradient-boosting model is the one that fails robustness (README: rejected, also robustness).
    assert check.passed is False and out.status == "failed"
    assert out.summary["allowed_features"] == ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    assert out.summary["runtime_s"]["total"] < 60


def test_sampling_error_is_the_worst_case_margin_of_a_share_of_the_sample():
    from modelcert.stages.robustness.evaluate import _margin

    assert _margin(100, 16_281) == pytest.approx(1.96 * np.sqrt(0.25 / 100 * (16_181 / 16_280)), abs=1e-6)
    assert _margin(100, 100) == 0.0  # the whole population: no sampling error
    assert _margin(400, 10_000_000) == pytest.approx(0.049, abs=1e-3)
