"""Proxy detection: how well the model's own inputs predict a protected attribute's group.

A model that drops ``sex`` from its features can still discriminate through a stand-in (relationship, marital
status). The probe here is a seeded, cross-validated HistGradientBoosting classifier predicting the privileged
group from the candidate features (the attribute itself excluded); its out-of-fold ROC AUC (0.5 = no
information, 1 = the features reveal the group) comes with a DeLong 95% interval. Each feature's association
with the group is Cramér's V (numeric features in quantile bins), so the strongest proxies are named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelcert.stages.explainability.columns import MAX_LEVELS, code_column

PROBE_FOLDS = 3
PROBE_ITER = 30
PROBE_LEARNING_RATE = 0.15
PROBE_LEAVES = 15
#: Features named as the strongest proxies of an attribute.
TOP_PROXIES = 5


def delong_auc(y: np.ndarray, score: np.ndarray, alpha: float = 0.05) -> tuple[float, tuple[float, float], float]:
    """ROC AUC, its (1 - alpha) interval and standard error by DeLong's method (the fast midrank algorithm of
    Sun & Xu 2014). The interval is clipped to [0, 1]."""
    from scipy.stats import norm, rankdata

    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=float)
    pos, neg = score[y], score[~y]
    m, n = len(pos), len(neg)
    tx, ty = rankdata(pos), rankdata(neg)
    tz = rankdata(np.concatenate([pos, neg]))
    auc = float((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
    v01 = (tz[:m] - tx) / n  # per positive: share of negatives scored below it
    v10 = 1.0 - (tz[m:] - ty) / m  # per negative: share of positives scored above it
    var = (np.var(v01, ddof=1) / m if m > 1 else 0.0) + (np.var(v10, ddof=1) / n if n > 1 else 0.0)
    se = math.sqrt(max(float(var), 0.0))
    z = float(norm.ppf(1 - alpha / 2))
    return auc, (max(0.0, auc - z * se), min(1.0, auc + z * se)), se


def cramers_v(codes: np.ndarray, group: np.ndarray) -> float:
    """Cramér's V between a coded feature and the (binary) group, from scipy's contingency association."""
    from scipy.stats.contingency import association

    g = np.asarray(group, dtype=bool).astype(np.int64)
    table = np.bincount(np.asarray(codes, dtype=np.int64) * 2 + g, minlength=2 * (int(codes.max()) + 1)).reshape(-1, 2)
    table = table[table.sum(axis=1) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return 0.0
    return float(association(table, method="cramer"))


def _probe_matrix(X: pd.DataFrame) -> tuple[np.ndarray, list[bool]]:
    """Numeric columns as floats; any other column as integer category codes (the most frequent levels, the
    rest shared), flagged categorical for the probe."""
    cols, categorical = [], []
    for c in X.columns:
        col = X[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            cols.append(col.to_numpy(dtype=float))
            categorical.append(False)
        else:
            values = col.astype(str).where(col.notna(), None)
            keep = list(values.value_counts().index[:MAX_LEVELS])
            index = {v: float(i) for i, v in enumerate(keep)}
            cols.append(np.fromiter((index.get(v, float(len(keep))) if v is not None else np.nan for v in values),
                                    dtype=float, count=len(values)))
            categorical.append(True)
    return np.column_stack(cols), categorical


@dataclass
class ProxyResult:
    attribute: str
    features: list[str]
    rows: int
    auc: float | None = None
    ci: tuple[float, float] | None = None
    se: float | None = None
    associations: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    @property
    def top(self) -> list[str]:
        return [a["feature"] for a in self.associations[:TOP_PROXIES]]

    def as_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "rows": self.rows, "features": self.features, "auc": self.auc,
                "ci95": list(self.ci) if self.ci else None, "se": self.se, "top_proxies": self.top,
                "associations": self.associations[:TOP_PROXIES * 2], "note": self.note,
                "probe": f"HistGradientBoostingClassifier(max_iter={PROBE_ITER}, learning_rate={PROBE_LEARNING_RATE}, "
                         f"max_leaf_nodes={PROBE_LEAVES}), {PROBE_FOLDS}-fold stratified "
                         "cross-validated out-of-fold scores; DeLong 95% interval; association: Cramér's V"}


def probe(attribute: str, X: pd.DataFrame, group: np.ndarray, *, seed: int, bins: int) -> ProxyResult:
    """The proxy strength of ``X`` (rows already sampled, the attribute's own column excluded) for ``group``
    (True = privileged)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features = [str(c) for c in X.columns]
    result = ProxyResult(attribute=attribute, features=features, rows=len(X))
    group = np.asarray(group, dtype=bool)
    assoc = []
    for c in features:
        coded = code_column(X[c], bins=bins)
        if coded is None:
            continue
        assoc.append({"feature": c, "cramers_v": cramers_v(coded.codes, group), "levels": coded.k})
    result.associations = sorted(assoc, key=lambda a: (-a["cramers_v"], a["feature"]))
    smaller = int(min(group.sum(), (~group).sum()))
    if not features:
        result.note = "no candidate feature to probe with"
        return result
    if smaller < PROBE_FOLDS:
        result.note = f"the smaller group has {smaller} row(s) in the sample; a {PROBE_FOLDS}-fold probe needs more"
        return result
    matrix, categorical = _probe_matrix(X)
    clf = HistGradientBoostingClassifier(max_iter=PROBE_ITER, learning_rate=PROBE_LEARNING_RATE,
                                         max_leaf_nodes=PROBE_LEAVES, categorical_features=categorical or None,
                                         early_stopping=False, random_state=seed)
    folds = StratifiedKFold(n_splits=PROBE_FOLDS, shuffle=True, random_state=seed)
    from threadpoolctl import threadpool_limits

    # One native thread: on small data OpenMP's per-split thread team costs more than it saves (5x here on a busy
    # 2-core host), and other stages may run in parallel.
    with threadpool_limits(limits=1):
        oof = cross_val_predict(clf, matrix, group.astype(int), cv=folds, method="predict_proba")[:, 1]
    result.auc, result.ci, result.se = delong_auc(group, oof)
    return result
