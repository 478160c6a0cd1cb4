"""Performance stage: scikit-learn metrics on tiny synthetic data (every check can pass and fail) and the demo."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from modelcert.stages.performance import STAGE, expected_calibration_error

GROUPS = {"g": {"privileged": ["a"]}}


def by_name(out, name, subject=""):
    found = [c for c in out.checks if c.name == name and c.subject == subject]
    assert len(found) == 1, f"{name}/{subject}: {[(c.name, c.subject) for c in out.checks]}"
    return found[0]


def assert_json(out) -> None:
    json.dumps([dataclasses.asdict(c) for c in out.checks], allow_nan=False)
    json.dumps(out.summary, allow_nan=False)


def audit_spec(performance: dict | None = None, score_column: str | None = "score") -> dict:
    spec: dict = {
        "predictions": {"column": "pred", "positive": [1], **({"score_column": score_column} if score_column else {})},
        "data": {"label": "y", "protected_attributes": GROUPS},
    }
    if performance is not None:
        spec["checks"] = {"performance": performance}
    return spec


def calibrated_frame() -> pd.DataFrame:
    """Bin centres 0.05 … 0.95, 100 rows each, with exactly round(100 p) positives: ECE 0."""
    rows = []
    for k in range(10):
        p = 0.05 + 0.1 * k
        pos = int(round(100 * p))
        rows += [{"score": p, "y": int(i < pos), "g": "a" if i % 2 else "b"} for i in range(100)]
    df = pd.DataFrame(rows)
    df["pred"] = (df["score"] >= 0.5).astype(int)
    return df


# ---------------------------------------------------------------------------------------------- units
def test_ece_function_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    prob = rng.uniform(size=500)
    y = (rng.uniform(size=500) < prob**2).astype(int)
    ece, bins = expected_calibration_error(y, prob)
    brute = 0.0
    edges = np.linspace(0, 1, 11)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (prob > lo) & (prob <= hi) if lo > 0 else (prob <= hi)
        if m.any():
            brute += m.mean() * abs(prob[m].mean() - y[m].mean())
    assert ece == pytest.approx(brute, abs=1e-12)
    assert sum(b["count"] for b in bins) == 500


def test_ece_calibrated_passes_miscalibrated_fails(synthetic_ctx) -> None:
    df = calibrated_frame()
    ctx = synthetic_ctx({"test": df}, audit_spec({"expected_calibration_error": {"max": 0.02}}))
    out = STAGE.run(ctx)
    ece = by_name(out, "expected_calibration_error")
    assert ece.value == pytest.approx(0.0, abs=1e-12) and ece.passed is True
    assert len(ece.detail["bins"]) == 10 and ece.detail["n_bins"] == 10
    # Brier score of a calibrated score: mean p(1-p) over bins
    centres = np.array([0.05 + 0.1 * k for k in range(10)])
    assert by_name(out, "brier_score").value == pytest.approx(float(np.mean(centres * (1 - centres))), abs=1e-12)
    assert by_name(out, "brier_score").passed is None  # no bound: informational

    # Every row says 0.9 but only half are positive: ECE = |0.9 - 0.5| = 0.4.
    bad = pd.DataFrame({"score": [0.9] * 200, "y": [1, 0] * 100, "g": ["a", "b"] * 100, "pred": [1] * 200})
    out = STAGE.run(synthetic_ctx({"test": bad}, audit_spec({"expected_calibration_error": {"max": 0.02}})))
    ece = by_name(out, "expected_calibration_error")
    assert ece.value == pytest.approx(0.4) and ece.passed is False
    assert out.status == "failed" and "needs <= 0.02" in ece.message


def test_label_metrics_values_and_confusion(synthetic_ctx) -> None:
    # 10 rows: TP=4, FN=1, FP=2, TN=3
    y = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    pred = [1, 1, 1, 1, 0, 1, 1, 0, 0, 0]
    df = pd.DataFrame({"y": y, "pred": pred, "g": ["a", "b"] * 5})
    ctx = synthetic_ctx({"test": df}, audit_spec({"accuracy": {"min": 0.7}, "precision": {"min": 0.7}}, score_column=None))
    out = STAGE.run(ctx)
    assert by_name(out, "accuracy").value == pytest.approx(0.7) and by_name(out, "accuracy").passed is True
    assert by_name(out, "precision").value == pytest.approx(4 / 6) and by_name(out, "precision").passed is False
    assert by_name(out, "recall").value == pytest.approx(0.8) and by_name(out, "recall").passed is None
    assert by_name(out, "balanced_accuracy").value == pytest.approx((0.8 + 0.6) / 2)
    assert by_name(out, "f1").value == pytest.approx(2 * (4 / 6) * 0.8 / (4 / 6 + 0.8))
    assert out.summary["confusion"] == {"tp": 4, "fp": 2, "fn": 1, "tn": 3}
    assert out.status == "failed" and [c.name for c in out.failures] == ["precision"]
    assert_json(out)


def test_no_score_roc_auc_info_or_failed(synthetic_ctx) -> None:
    df = pd.DataFrame({"y": [1, 0] * 20, "pred": [1, 0] * 20, "g": ["a", "b"] * 20})
    # no threshold on roc_auc: informational, explains why
    out = STAGE.run(synthetic_ctx({"test": df}, audit_spec({"accuracy": {"min": 0.9}}, score_column=None)))
    auc = by_name(out, "roc_auc")
    assert auc.value is None and auc.passed is None and "no score is available" in auc.message
    assert out.status == "passed"
    for name in ("latency_p50_ms", "latency_p95_ms", "model_size_mb"):
        c = by_name(out, name)
        assert c.passed is None and c.value is None and "not applicable: predictions only" in c.message
    # a threshold on a metric that needs a score: failed, message says no score
    out = STAGE.run(synthetic_ctx({"test": df}, audit_spec({"roc_auc": {"min": 0.7}}, score_column=None)))
    auc = by_name(out, "roc_auc")
    assert auc.passed is False and auc.value is None and "no score is available" in auc.message
    assert out.status == "failed"


def test_decile_score_is_scaled_and_said_so(synthetic_ctx) -> None:
    rng = np.random.default_rng(0)
    decile = rng.integers(1, 11, size=300)
    y = (rng.uniform(size=300) < decile / 11).astype(int)
    df = pd.DataFrame({"decile": decile, "y": y, "pred": (decile >= 5).astype(int), "g": ["a", "b", "c"] * 100})
    out = STAGE.run(synthetic_ctx({"test": df}, audit_spec({"roc_auc": {"min": 0.6}}, score_column="decile")))
    scaled = (decile - decile.min()) / (decile.max() - decile.min())
    brier = by_name(out, "brier_score")
    assert brier.value == pytest.approx(float(np.mean((scaled - y) ** 2)))
    assert "scaled to [0, 1] by (score - 1) / (10 - 1)" in brier.message
    assert "scaled to [0, 1]" in by_name(out, "expected_calibration_error").message
    from sklearn.metrics import roc_auc_score

    assert by_name(out, "roc_auc").value == pytest.approx(roc_auc_score(y, decile))
    assert out.summary["score"] == "scaled"


@pytest.fixture
def fitted_model():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(42)
    n = 400
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(2 * X.x1 - X.x2)))).astype(int)
    df = X.assign(y=y, g=np.where(rng.uniform(size=n) < 0.5, "a", "b"))
    model = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(X, y)
    return df.iloc[:250], df.iloc[250:], model


def test_model_metrics_latency_and_size(synthetic_ctx, fitted_model) -> None:
    from sklearn.metrics import accuracy_score, roc_auc_score

    train, test, model = fitted_model
    spec = {"model": {"features": ["x1", "x2"]}, "data": {"label": "y", "protected_attributes": GROUPS},
            "checks": {"performance": {"roc_auc": {"min": 0.7}, "latency_p95_ms": {"max": 1000},
                                       "model_size_mb": {"max": 1}}}}
    ctx = synthetic_ctx({"train": train, "test": test}, spec, model=model)
    out = STAGE.run(ctx)
    proba = model.predict_proba(test[["x1", "x2"]])[:, 1]
    assert by_name(out, "roc_auc").value == pytest.approx(roc_auc_score(test.y, proba))
    assert by_name(out, "roc_auc").passed is True
    assert by_name(out, "accuracy").value == pytest.approx(accuracy_score(test.y, proba >= 0.5))
    p50, p95 = by_name(out, "latency_p50_ms"), by_name(out, "latency_p95_ms")
    assert 0 < p50.value <= p95.value < 1000 and p95.passed is True and p50.passed is None
    assert p50.detail["rows_timed"] == 150  # the whole (small) test set, bounded at 200
    size = by_name(out, "model_size_mb")
    artifact = ctx.base_dir / "model.skops"
    assert size.value == pytest.approx(artifact.stat().st_size / 1e6) and size.passed is True
    assert size.detail["bytes"] == artifact.stat().st_size
    assert by_name(out, "batch_throughput_rows_per_s").value > 0
    assert out.status == "passed" and out.library == "scikit-learn" and out.library_version
    assert_json(out)

    # the same model against bounds it cannot meet
    spec["checks"]["performance"] = {"roc_auc": {"min": 0.99}, "latency_p50_ms": {"max": 1e-6},
                                     "model_size_mb": {"max": 1e-6}}
    out = STAGE.run(synthetic_ctx({"train": train, "test": test}, spec, model=model))
    assert {c.name for c in out.failures} == {"roc_auc", "latency_p50_ms", "model_size_mb"}
    assert out.status == "failed"


# ---------------------------------------------------------------------------------------------- demo
def test_german_credit_passes(demo_ctx) -> None:
    out = STAGE.run(demo_ctx("german_credit"))
    assert out.status == "passed", [c.message for c in out.failures]
    assert by_name(out, "roc_auc").value == pytest.approx(0.7807, abs=1e-3)
    assert by_name(out, "balanced_accuracy").value == pytest.approx(0.6643, abs=1e-3)
    assert by_name(out, "expected_calibration_error").value == pytest.approx(0.0305, abs=1e-3)
    assert by_name(out, "brier_score").value == pytest.approx(0.1646, abs=1e-3)
    assert out.summary["confusion"] == {"tp": 123, "fp": 33, "fn": 17, "tn": 27}
    assert by_name(out, "latency_p95_ms").value > 0 and by_name(out, "model_size_mb").value > 0
    assert_json(out)


def test_adult_income_performance(demo_ctx) -> None:
    out = STAGE.run(demo_ctx("adult_income"))
    assert out.status == "passed"
    assert by_name(out, "roc_auc").value == pytest.approx(0.9289, abs=1e-3)
    assert by_name(out, "expected_calibration_error").value < 0.05
    assert out.summary["rows"] == 14653


def test_compas_audit_from_predictions(demo_ctx) -> None:
    out = STAGE.run(demo_ctx("compas_audit"))
    assert out.status == "passed"
    assert by_name(out, "roc_auc").value == pytest.approx(0.7098, abs=1e-3)
    assert by_name(out, "accuracy").value == pytest.approx(0.6607, abs=1e-3)
    assert "decile_score" in by_name(out, "expected_calibration_error").message
    assert "not applicable: predictions only" in by_name(out, "latency_p50_ms").message
    assert out.summary["source"] == "predictions column"
    assert_json(out)
