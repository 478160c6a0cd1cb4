"""Global feature importance, overall and per protected group, with the method and sample stored beside it.

SHAP where it fits the model: ``shap.TreeExplainer`` for tree ensembles and ``shap.LinearExplainer`` for linear
models, also as the last step of a scikit-learn pipeline whose preprocessing is a ColumnTransformer (the SHAP
values of the encoded columns are summed back to the input feature they came from: SHAP values are additive).
Anything else — another estimator, or a pickle model that only answers predict_proba from its isolated process —
gets scikit-learn's ``permutation_importance`` (drop in ROC AUC when a feature is shuffled), which only calls the
model. Importance per group: mean |SHAP| over the group's rows, or permutation importance on the group's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Features listed per group and as the largest between-group differences.
TOP = 5


@dataclass
class Importance:
    method: str
    unit: str
    rows: int
    seed: int
    values: dict[str, float]
    by_group: dict[str, dict[str, Any]] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def ranked(self) -> list[dict[str, Any]]:
        return _ranked(self.values)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "unit": self.unit, "sample_rows": self.rows, "seed": self.seed,
                "features": self.ranked(), "by_group": self.by_group, **self.detail}


def _ranked(values: Mapping[str, float]) -> list[dict[str, Any]]:
    total = sum(max(v, 0.0) for v in values.values())
    return [{"feature": f, "importance": float(v), "share": float(max(v, 0.0) / total) if total > 0 else 0.0}
            for f, v in sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))]


def group_comparison(priv: Mapping[str, float], unpriv: Mapping[str, float]) -> dict[str, Any]:
    """Top features of each group and the features whose share of importance differs most between them."""
    rp, ru = _ranked(priv), _ranked(unpriv)
    sp = {r["feature"]: r["share"] for r in rp}
    su = {r["feature"]: r["share"] for r in ru}
    diffs = sorted(({"feature": f, "privileged_share": sp.get(f, 0.0), "unprivileged_share": su.get(f, 0.0),
                     "difference": su.get(f, 0.0) - sp.get(f, 0.0)} for f in sp),
                   key=lambda d: (-abs(d["difference"]), d["feature"]))
    return {"privileged_top": [r["feature"] for r in rp[:TOP]], "unprivileged_top": [r["feature"] for r in ru[:TOP]],
            "privileged": rp[:TOP], "unprivileged": ru[:TOP], "largest_differences": diffs[:TOP]}


# ------------------------------------------------------------------------------------------- SHAP
def _kind(estimator: Any) -> str | None:
    module = type(estimator).__module__
    if module.startswith(("sklearn.ensemble", "sklearn.tree")) and type(estimator).__name__ not in (
            "VotingClassifier", "StackingClassifier", "BaggingClassifier", "AdaBoostClassifier"):
        return "tree"
    if module.startswith("sklearn.linear_model") and hasattr(estimator, "coef_"):
        return "linear"
    return None


def _encoder_widths(transformer: Any, n_columns: int) -> list[int] | None:
    """Output columns per input column of a fitted ColumnTransformer part (None when unknown)."""
    from sklearn.pipeline import Pipeline

    last = transformer[-1] if isinstance(transformer, Pipeline) else transformer
    cats = getattr(last, "categories_", None)
    if cats is None or getattr(last, "_infrequent_enabled", False) or len(cats) != n_columns:
        return None
    drops = getattr(last, "drop_idx_", None)
    return [len(c) - (1 if drops is not None and drops[k] is not None else 0) for k, c in enumerate(cats)]


def _output_sources(pre: Any, columns: list[str]) -> np.ndarray | None:
    """For each column the preprocessing outputs, the position of the input feature it comes from (None when the
    preprocessing is not a ColumnTransformer whose outputs can be traced)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in pre.steps] if isinstance(pre, Pipeline) else [pre]
    if len(steps) != 1 or not isinstance(steps[0], ColumnTransformer):
        return None
    ct = steps[0]
    width = sum(sl.stop - sl.start for sl in ct.output_indices_.values())
    out = np.full(width, -1, dtype=np.int64)
    position = {c: i for i, c in enumerate(columns)}
    for name, transformer, cols in ct.transformers_:
        sl = ct.output_indices_.get(name)
        if sl is None or sl.stop == sl.start or transformer == "drop":
            continue
        names = [columns[c] if isinstance(c, (int, np.integer)) else str(c) for c in np.atleast_1d(cols)]
        if any(n not in position for n in names):
            return None
        n_out = sl.stop - sl.start
        if n_out == len(names):
            widths = [1] * len(names)
        else:
            widths = _encoder_widths(transformer, len(names)) or []
            if sum(widths) != n_out:
                return None
        at = sl.start
        for n, w in zip(names, widths, strict=True):
            out[at:at + w] = position[n]
            at += w
    return None if (out < 0).any() else out


def shap_importance(model: Any, X: pd.DataFrame, positive_index: int) -> tuple[str, np.ndarray] | None:
    """(method, per-row SHAP values summed per input feature, n x p) or None when SHAP does not fit the model."""
    from sklearn.pipeline import Pipeline

    estimator, pre = model, None
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        estimator, pre = model[-1], model[:-1]
    kind = _kind(estimator)
    if kind is None:
        return None
    columns = [str(c) for c in X.columns]
    if pre is None:
        if not all(pd.api.types.is_numeric_dtype(X[c]) for c in X.columns):
            return None
        Z, sources = X.to_numpy(dtype=float), np.arange(len(columns))
    else:
        sources = _output_sources(pre, columns)
        if sources is None:
            return None
        Z = pre.transform(X)
        Z = np.asarray(Z.toarray() if hasattr(Z, "toarray") else Z, dtype=float)
        if Z.shape[1] != len(sources):
            return None
    import warnings

    with warnings.catch_warnings():  # shap's plotting colours call matplotlib APIs that warn on import
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    if kind == "tree":
        explainer = shap.TreeExplainer(estimator)
        name = "shap.TreeExplainer"
        sv = explainer.shap_values(Z, check_additivity=False)
    else:
        explainer = shap.LinearExplainer(estimator, Z)
        name = "shap.LinearExplainer"
        sv = explainer.shap_values(Z)
    if isinstance(sv, list):
        sv = sv[positive_index] if len(sv) > 1 else sv[0]
    sv = np.asarray(sv, dtype=float)
    if sv.ndim == 3:
        sv = sv[:, :, positive_index]
    per_feature = np.zeros((Z.shape[0], len(columns)))
    np.add.at(per_feature.T, sources, sv.T)
    return name, per_feature


# ------------------------------------------------------------------------------------------- permutation
class _Queried:
    """The model as permutation_importance sees it: nothing but a score function (predict_proba of the positive
    class), so an isolated model works as well as one in this process."""

    def __init__(self, score: Callable[[pd.DataFrame], np.ndarray]) -> None:
        self.score = score

    def fit(self, X: Any, y: Any = None) -> _Queried:  # noqa: ARG002 - required by permutation_importance
        return self


def _auc_scorer(est: _Queried, X: pd.DataFrame, y: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score, roc_auc_score

    s = est.score(X)
    if len(np.unique(y)) < 2:
        return float(accuracy_score(y, (s >= 0.5).astype(int)))
    return float(roc_auc_score(y, s))


def permutation(score: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame, y: np.ndarray, *, repeats: int,
                seed: int) -> dict[str, float]:
    from sklearn.inspection import permutation_importance

    r = permutation_importance(_Queried(score), X.reset_index(drop=True), y, scoring=_auc_scorer, n_repeats=repeats,
                               random_state=seed)
    return {str(c): float(v) for c, v in zip(X.columns, r.importances_mean, strict=True)}


def explain(*, model: Any, score: Callable[[pd.DataFrame], np.ndarray], isolated: bool, positive_index: int,
            X: pd.DataFrame, y: np.ndarray | None, groups: Mapping[str, np.ndarray], seed: int,
            repeats: int) -> Importance | str:
    """Importance on the sampled rows ``X`` (labels ``y`` or None), overall and per group (``groups``: attribute ->
    privileged mask over the rows). Returns the reason instead when no method applies."""
    columns = [str(c) for c in X.columns]
    shap_result = None if isolated else shap_importance(model, X, positive_index)
    if shap_result is not None:
        method, sv = shap_result
        mean_abs = np.abs(sv).mean(axis=0)
        imp = Importance(method=method, unit="mean |SHAP value| (log-odds of the positive class)", rows=len(X),
                         seed=seed, values=dict(zip(columns, map(float, mean_abs), strict=True)))
        for attr, priv in groups.items():
            if priv.any() and (~priv).any():
                imp.by_group[attr] = group_comparison(
                    dict(zip(columns, map(float, np.abs(sv[priv]).mean(axis=0)), strict=True)),
                    dict(zip(columns, map(float, np.abs(sv[~priv]).mean(axis=0)), strict=True)))
        return imp
    if y is None:
        return ("SHAP does not fit this model (not a tree or linear model in this process) and permutation importance "
                "needs the true labels, which the data does not have")
    why = "the model runs in the isolated process (pickle)" if isolated else "SHAP does not fit this model"
    imp = Importance(method="sklearn.inspection.permutation_importance",
                     unit="mean drop in ROC AUC when the feature is shuffled", rows=len(X), seed=seed,
                     values=permutation(score, X, y, repeats=repeats, seed=seed),
                     detail={"n_repeats": repeats, "why_not_shap": why})
    for attr, priv in groups.items():
        if priv.sum() >= 10 and (~priv).sum() >= 10:
            imp.by_group[attr] = group_comparison(
                permutation(score, X[priv], y[priv], repeats=repeats, seed=seed),
                permutation(score, X[~priv], y[~priv], repeats=repeats, seed=seed))
    return imp
