"""Performance on the test set with scikit-learn's metrics: discrimination, calibration, latency and size.

Every metric computed is stored: judged against ``checks.performance`` when the spec bounds it, informational
otherwise. A metric the spec bounds but that cannot be computed (no score for ROC AUC, no model for latency)
is a failed check that says why, never a silent pass.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelcert.context import EvalContext
from modelcert.errors import DataError
from modelcert.spec import resolve_path
from modelcert.stages.base import Check, StageOutcome, outcome, threshold_requirements
from modelcert.thresholds import Threshold

#: Rows timed one at a time for the latency percentiles (a seeded sample, bounded for big test sets).
LATENCY_SAMPLE = 200
LATENCY_SEED = 0
#: Calibration bins: equal width on [0, 1].
ECE_BINS = 10
PREDICTIONS_ONLY = "not applicable: predictions only (third-party audit without a model artifact)"
#: Points kept per curve in the stage summary (ROC, precision-recall): enough to draw it, small enough to store.
CURVE_POINTS = 200


def _num(value: Any) -> float | None:
    """A plain Python float, None for missing / NaN / infinite."""
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) or math.isinf(v) else v


def _downsample(*columns: np.ndarray, points: int = CURVE_POINTS) -> list[list[float]]:
    """Up to ``points`` evenly spaced rows of the curve (first and last always kept), rounded to 6 decimals."""
    n = len(columns[0])
    idx = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(int)) if n else np.array([], dtype=int)
    return [[round(float(c[i]), 6) for i in idx] for c in columns]


def curves(y_true: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall curves (scikit-learn), downsampled for the dossier's plots."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y_true, score, pos_label=1)
    precision, recall, _ = precision_recall_curve(y_true, score, pos_label=1)
    roc_fpr, roc_tpr = _downsample(fpr, tpr)
    pr_recall, pr_precision = _downsample(recall[::-1], precision[::-1])
    return {"roc": {"fpr": roc_fpr, "tpr": roc_tpr},
            "pr": {"recall": pr_recall, "precision": pr_precision,
                   "positive_rate": round(float(np.mean(y_true)), 6)},
            "points_max": CURVE_POINTS, "method": "sklearn.metrics.roc_curve / precision_recall_curve"}


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray,
                               n_bins: int = ECE_BINS) -> tuple[float, list[dict[str, Any]]]:
    """ECE over ``n_bins`` equal-width bins: sum over bins of (bin count / n) * |mean predicted - observed rate|.

    The per-bin rates come from :func:`sklearn.calibration.calibration_curve`; the bin counts use the same
    bin assignment (``searchsorted`` on the inner edges), which calibration_curve does not return."""
    from sklearn.calibration import calibration_curve

    y_true = np.asarray(y_true, dtype=np.int64)
    prob = np.asarray(prob, dtype=float)
    prob_true, prob_pred = calibration_curve(y_true, prob, n_bins=n_bins, strategy="uniform", pos_label=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], prob), minlength=n_bins)
    nonzero = np.flatnonzero(counts)
    if len(nonzero) != len(prob_true):  # pragma: no cover - guards against a change in sklearn's binning
        raise RuntimeError("calibration_curve returned a different number of bins than expected")
    weights = counts[nonzero] / len(prob)
    ece = float(np.sum(weights * np.abs(prob_pred - prob_true)))
    bins = [
        {"bin": [float(edges[i]), float(edges[i + 1])], "count": int(counts[i]),
         "mean_predicted": float(pp), "observed_rate": float(pt)}
        for i, pp, pt in zip(nonzero, prob_pred, prob_true, strict=True)
    ]
    return ece, bins


def _fmt_seconds(v: float | None) -> str:
    return "an unknown time" if v is None else f"{v:.4f} s"


class PerformanceStage:
    name = "performance"
    library = "scikit-learn"

    def run(self, ctx: EvalContext) -> StageOutcome:
        from sklearn import metrics as skm

        spec = ctx.spec
        thresholds: dict[str, Threshold] = dict(spec.checks.performance)
        y = ctx.labels("test")
        y_pred, raw_score = ctx.predictions("test")
        n = int(len(y))
        both_classes = bool(y.min() != y.max())

        checks: list[Check] = []

        def record(name: str, value: float | None, *, message: str = "", detail: dict[str, Any] | None = None) -> None:
            v = _num(value)
            if name in thresholds:
                t = thresholds[name]
                if v is None:
                    msg = f"{name} is not available: {message or 'undefined'}; the spec requires {t.text()}"
                else:
                    msg = f"{name} {v:.4g} (needs {t.text()})" + (f"; {message}" if message else "")
                checks.append(Check.judged(name, v, t, message=msg, detail=detail))
            else:
                shown = "n/a" if v is None else f"{v:.4g}"
                msg = message if v is None else f"{name} {shown} (informational: no bound in checks.performance)" + (
                    f"; {message}" if message else "")
                checks.append(Check.info(name, v, message=msg, detail=detail))

        # ------------------------------------------------------------------ label-based metrics
        with np.errstate(divide="ignore", invalid="ignore"):
            record("accuracy", skm.accuracy_score(y, y_pred))
            record("balanced_accuracy", skm.balanced_accuracy_score(y, y_pred) if both_classes else None,
                   message="" if both_classes else "the test labels contain one class only")
            prec = skm.precision_score(y, y_pred, zero_division=np.nan)
            record("precision", prec, message="" if _num(prec) is not None else "the model predicts no positive")
            rec = skm.recall_score(y, y_pred, zero_division=np.nan)
            record("recall", rec, message="" if _num(rec) is not None else "the test set has no positive label")
            f1 = skm.f1_score(y, y_pred, zero_division=np.nan)
            record("f1", f1, message="" if _num(f1) is not None else "precision and recall are both undefined or zero")

        # ------------------------------------------------------------------ score-based metrics
        score = None
        score_note = ""
        curve_data: dict[str, Any] | None = None
        calibration_groups: dict[str, Any] = {}
        if raw_score is not None:
            score = np.asarray(raw_score, dtype=float)
            lo, hi = float(score.min()), float(score.max())
            if lo < 0.0 or hi > 1.0:
                col = spec.predictions.score_column if spec.predictions is not None else "score"
                if hi > lo:
                    score = (score - lo) / (hi - lo)
                else:
                    score = np.full_like(score, 0.5)
                score_note = (f"score column {col!r} ranges over [{lo:g}, {hi:g}], not a probability; "
                              f"scaled to [0, 1] by (score - {lo:g}) / ({hi:g} - {lo:g}) for calibration")
        if score is None:
            why = ("no score is available: the audit gives no predictions.score_column" if spec.is_audit
                   else "no score is available from the model")
            for name in ("roc_auc", "brier_score", "expected_calibration_error"):
                record(name, None, message=why)
        else:
            if both_classes:
                record("roc_auc", skm.roc_auc_score(y, score),
                       message=score_note and "ROC AUC is invariant to the scaling of the score")
            else:
                record("roc_auc", None, message="ROC AUC is undefined: the test labels contain one class only")
            record("brier_score", skm.brier_score_loss(y, score, pos_label=1), message=score_note)
            ece, bins = expected_calibration_error(y, score)
            if both_classes:
                curve_data = curves(y, score)
            calibration_groups = self._calibration_by_group(ctx, y, score)
            record("expected_calibration_error", ece, message=score_note,
                   detail={"n_bins": ECE_BINS, "strategy": "uniform", "bins": bins,
                           **({"scaled": score_note} if score_note else {})})

        # ------------------------------------------------------------------ latency and size
        summary_latency: dict[str, Any] = {}
        if spec.is_audit:
            for name in ("latency_p50_ms", "latency_p95_ms", "model_size_mb"):
                record(name, None, message=PREDICTIONS_ONLY)
        else:
            lat = self._latency(ctx)
            summary_latency = lat
            detail = {"rows_timed": lat["rows_timed"], "seed": LATENCY_SEED, "method": lat["method"],
                      "native_threads": lat["native_threads"], "isolated_process": lat["isolated_process"]}
            record("latency_p50_ms", lat["p50_ms"],
                   message=f"median of {lat['rows_timed']} single-row {lat['method']} calls", detail=detail)
            record("latency_p95_ms", lat["p95_ms"],
                   message=f"95th percentile of {lat['rows_timed']} single-row {lat['method']} calls", detail=detail)
            checks.append(Check.info("batch_throughput_rows_per_s", lat["batch_rows_per_s"],
                                     message=f"{lat['method']} on all {n} test rows in one call took "
                                             f"{_fmt_seconds(lat['batch_seconds'])} (the run's own prediction of "
                                             "the test set, timed when it was made)",
                                     detail={"rows": n, "seconds": lat["batch_seconds"],
                                             "source": "the run's prediction of the test set"}))
            size_bytes, path = self._artifact_size(ctx)
            record("model_size_mb", size_bytes / 1e6,
                   message=f"artifact file size (1 MB = 10^6 bytes): {size_bytes} bytes",
                   detail={"bytes": size_bytes, "path": path})

        # ------------------------------------------------------------------ summary
        tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, y_pred, labels=[0, 1]).ravel())
        summary: dict[str, Any] = {
            "rows": n,
            "positive_label": spec.data.positive_label,
            "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
            "positive_rate": _num(y.mean()),
            "predicted_positive_rate": _num(y_pred.mean()),
            "score": ("none" if raw_score is None else ("scaled" if score_note else "probability")),
            "source": "predictions column" if spec.is_audit else "model",
        }
        if score_note:
            summary["score_note"] = score_note
        if curve_data is not None:
            summary["curves"] = curve_data
        if calibration_groups:
            summary["calibration_by_group"] = calibration_groups
        if summary_latency:
            summary["latency"] = summary_latency
        return outcome(self.name, checks, library=self.library, summary=summary,
                       requires=threshold_requirements("checks.performance", thresholds))

    # ---------------------------------------------------------------------- helpers
    @staticmethod
    def _calibration_by_group(ctx: EvalContext, y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
        """Per protected attribute and group, the calibration bins (for the per-group calibration plot)."""
        out: dict[str, Any] = {}
        for attr in ctx.spec.data.protected_attributes:
            try:
                masks = ctx.group_masks(attr, "test")
            except DataError:  # an empty group is the fairness stage's finding, not this plot's
                continue
            groups = {}
            for g, mask in masks.items():
                if mask.sum() and y[mask].min() != y[mask].max():
                    ece_g, bins_g = expected_calibration_error(y[mask], score[mask])
                    groups[g] = {"n": int(mask.sum()), "ece": round(ece_g, 6),
                                 "bins": [{"mean_predicted": round(b["mean_predicted"], 6),
                                           "observed_rate": round(b["observed_rate"], 6), "count": b["count"]}
                                          for b in bins_g]}
            if groups:
                out[attr] = groups
        return out

    @staticmethod
    def _latency(ctx: EvalContext) -> dict[str, Any]:
        """Single-row latency of the model itself: rows sliced before timing, one native thread, and
        scikit-learn's per-call input checks that repeat on every call (finiteness scan, parameter validation)
        switched off with ``sklearn.config_context`` — the rows were validated once, up front
        (``EvalContext.feature_frame``). Throughput is not measured again: it is the run's own prediction of the
        whole test set, timed when it was made (``EvalContext.prediction_seconds``)."""
        import sklearn
        from threadpoolctl import threadpool_limits

        model = ctx.model
        X = ctx.feature_frame("test")
        ctx.predictions("test")  # the run's prediction (cached, or made now and timed)
        batch = ctx.prediction_seconds.get("test")
        method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
        fn = getattr(model, method)
        rng = np.random.default_rng(LATENCY_SEED)
        k = min(LATENCY_SAMPLE, len(X))
        idx = np.sort(rng.choice(len(X), size=k, replace=False))
        rows = [X.iloc[[i]] for i in idx]  # sliced before timing: only the model call is measured
        # One native thread (OpenMP/BLAS): a serving worker answers one request per thread, and on a busy host
        # OpenMP's per-call thread team makes single-row timings of e.g. gradient boosting 10x noisier/slower.
        with threadpool_limits(limits=1), sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            for r in rows[:3]:  # warm-up (lazy imports, caches)
                fn(r)
            times = np.empty(k)
            for j, r in enumerate(rows):
                t0 = time.perf_counter()
                fn(r)
                times[j] = time.perf_counter() - t0
        return {
            "method": method,
            "native_threads": 1,
            "sklearn_checks": "assume_finite, skip_parameter_validation (inputs validated once, up front)",
            # An isolated (pickle) model answers over a pipe: its timings include that round trip.
            "isolated_process": bool(getattr(model, "isolated", False)),
            "rows_timed": int(k),
            "p50_ms": float(np.percentile(times, 50) * 1e3),
            "p95_ms": float(np.percentile(times, 95) * 1e3),
            "batch_seconds": None if batch is None else float(batch),
            "batch_rows_per_s": float(len(X) / batch) if batch else None,
        }

    @staticmethod
    def _artifact_size(ctx: EvalContext) -> tuple[int, str]:
        if ctx.evidence is not None and "model" in ctx.evidence.files:
            f = ctx.evidence.files["model"]
            return int(f["bytes"]), str(f["path"])
        assert ctx.spec.model.artifact is not None
        path: Path = resolve_path(ctx.spec.model.artifact, ctx.base_dir)
        return int(path.stat().st_size), str(path)


STAGE = PerformanceStage()
