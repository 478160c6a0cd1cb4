"""Champion vs challenger (and benchmark): a paired bootstrap on the same test rows.

Both models score the same test data; each bootstrap resample draws the *same* rows for both (a multinomial
weight vector over the rows), so the change (reference minus challenger: positive = the challenger is worse) is
measured without the noise of two independent samples. Metrics: ROC AUC, accuracy and, per protected attribute,
the impact ratio (favorable-prediction rate of one group over the other's, the smaller over the larger: 1 =
parity). ROC AUC per resample is computed from weighted rank sums over the distinct scores (one sort per model),
so 1,000 resamples of 16,000 rows need no further sort.

Verdicts: for each change and its bound, two one-sided bootstrap p-values — that the change meets the bound,
and that it violates it — adjusted across the stage's comparisons (Holm or Benjamini-Hochberg, statsmodels
``multipletests``) at ``alpha / 2`` each; *fail* when "meets" is rejected, *pass* when "violates" is rejected,
else *inconclusive*. Unadjusted, this is exactly the rule of ``Threshold.interval_verdict`` on the percentile
(1 - alpha) interval, which is stored with every value.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcert.thresholds import Threshold, Verdict

#: Resamples drawn per block (memory: block x rows weights).
BLOCK = 50


@dataclass(frozen=True)
class Metric:
    """A metric of both models on the same rows: point values and the bootstrap distribution of the change."""

    name: str
    subject: str
    reference: float
    challenger: float
    changes: np.ndarray  # reference - challenger, per resample

    @property
    def change(self) -> float:
        return self.reference - self.challenger

    def ci(self, alpha: float = 0.05) -> tuple[float, float]:
        finite = self.changes[np.isfinite(self.changes)]
        if not len(finite):
            return (math.nan, math.nan)
        lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)


class _Auc:
    """Weighted ROC AUC of one score vector under many row-weight vectors (ties count one half): the weights are
    summed per distinct score (a sparse indicator product), negatives below each score by a cumulative sum."""

    def __init__(self, y: np.ndarray, score: np.ndarray) -> None:
        from scipy import sparse

        _, inverse = np.unique(score, return_inverse=True)
        k = int(inverse.max()) + 1
        n = len(score)
        pos = np.asarray(y, dtype=bool)
        # transposed once here (distinct scores x rows), so each call is one CSR x dense product
        self.pos = sparse.csr_matrix((np.ones(int(pos.sum())), (inverse[pos], np.flatnonzero(pos))), shape=(k, n))
        self.neg = sparse.csr_matrix((np.ones(int((~pos).sum())), (inverse[~pos], np.flatnonzero(~pos))),
                                     shape=(k, n))

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        wt = np.ascontiguousarray(weights.T)
        P = np.asarray(self.pos @ wt).T  # resamples x distinct scores: positive weight per score
        N = np.asarray(self.neg @ wt).T
        below = np.cumsum(N, axis=1) - N
        num = (P * (below + 0.5 * N)).sum(axis=1)
        den = P.sum(axis=1) * N.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / den, np.nan)


def impact_ratio(rate_a: np.ndarray, rate_b: np.ndarray) -> np.ndarray:
    """min(a/b, b/a): 1 = both groups get the favorable prediction equally often; 1 when both rates are 0."""
    a, b = np.asarray(rate_a, dtype=float), np.asarray(rate_b, dtype=float)
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi > 0, lo / hi, 1.0)


def paired_bootstrap(*, y: np.ndarray, reference: np.ndarray, challenger: np.ndarray, favorable_positive: bool,
                     groups: dict[str, np.ndarray], resamples: int, seed: int, label: str) -> list[Metric]:
    """Changes ``reference - challenger`` of ROC AUC, accuracy and each attribute's impact ratio; ``reference``
    and ``challenger`` are positive-class probabilities on the same rows; ``groups`` maps an attribute to its
    privileged mask. The same resampled rows are used for both models."""
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    scores = {"reference": np.asarray(reference, dtype=float), "challenger": np.asarray(challenger, dtype=float)}
    preds = {k: (v >= 0.5).astype(np.int64) for k, v in scores.items()}
    both = bool(y.min() != y.max())
    aucs = {k: _Auc(y, v) for k, v in scores.items()} if both else {}
    correct = {k: (p == y).astype(float) for k, p in preds.items()}
    fav = {k: (p == 1 if favorable_positive else p == 0).astype(float) for k, p in preds.items()}
    ones = np.ones((1, n))

    def stats(w: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        size = w.sum(axis=1)
        out: dict[str, dict[str, np.ndarray]] = {}
        for k in scores:
            m = {"accuracy": (w @ correct[k]) / size}
            if both:
                m["roc_auc"] = aucs[k](w)
            for attr, priv in groups.items():
                with np.errstate(divide="ignore", invalid="ignore"):
                    rp = (w @ (fav[k] * priv)) / (w @ priv.astype(float))
                    ru = (w @ (fav[k] * ~priv)) / (w @ (~priv).astype(float))
                m[f"impact_ratio:{attr}"] = impact_ratio(rp, ru)
            out[k] = m
        return out

    point = stats(ones)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < resamples:
        b = min(BLOCK, resamples - done)
        idx = rng.integers(0, n, size=(b, n))
        w = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n).astype(float)
        s = stats(w)
        for key in s["reference"]:
            draws.setdefault(key, []).append(s["reference"][key] - s["challenger"][key])
        done += b
    out = []
    for key, parts in draws.items():
        name, _, attr = key.partition(":")
        out.append(Metric(name=name, subject=f"{label}: {attr}" if attr else label,
                          reference=float(point["reference"][key][0]), challenger=float(point["challenger"][key][0]),
                          changes=np.concatenate(parts)))
    return out


def verdicts(metrics: list[tuple[Metric, Threshold]], *, alpha: float, method: str) -> list[dict[str, Any]]:
    """The verdict of each (change, bound), adjusted for the family of all of them (see the module docstring)."""
    from statsmodels.stats.multitest import multipletests

    if not metrics:
        return []
    p_meets, p_violates = [], []
    for m, t in metrics:
        lo, hi = t.allowed()
        c = m.changes[np.isfinite(m.changes)]
        inside = ((c >= lo) & (c <= hi)).sum() if len(c) else 0
        total = len(c)
        # +1: a bootstrap p-value is never 0 (the observed data is one of the possible resamples)
        p_meets.append((inside + 1) / (total + 1))
        p_violates.append((total - inside + 1) / (total + 1))
    sm = {"holm": "holm", "bh": "fdr_bh"}[method]
    # statsmodels' Holm branch calls gc.collect(): in a worker holding Airflow, pandas and the model that is a
    # full collection of every live object (0.8 s each here). Frozen objects are skipped by the collector.
    gc.freeze()
    try:
        rej_fail, adj_meets, _, _ = multipletests(p_meets, alpha=alpha / 2, method=sm)
        rej_pass, adj_violates, _, _ = multipletests(p_violates, alpha=alpha / 2, method=sm)
    finally:
        gc.unfreeze()
    out = []
    for i, (m, _) in enumerate(metrics):
        finite = bool(np.isfinite(m.change)) and np.isfinite(m.changes).any()
        verdict: Verdict = ("fail" if rej_fail[i] else "pass" if rej_pass[i] else "inconclusive") if finite else "fail"
        out.append({"verdict": verdict, "p_meets_bound_adjusted": float(adj_meets[i]),
                    "p_violates_bound_adjusted": float(adj_violates[i]), "family_size": len(metrics),
                    "multiple_testing": method, "alpha": alpha})
    return out
