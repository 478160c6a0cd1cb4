"""Weak slices: groups of test rows, defined by one or two features, where the model errs significantly more.

Every slice of one feature (a category, or a quantile bin of a numeric feature) and of each pair of features
with at least ``min_size`` rows (and at least ``min_size`` outside it) is tried. Its error rate is compared with
the rest of the test data by a one-sided pooled two-proportion z-test (the test of statsmodels'
``proportions_ztest``, vectorized over slices); Benjamini-Hochberg (statsmodels ``multipletests``) controls the
false-discovery rate across *every* slice tried. A slice is weak when it is a discovery and its error rate
exceeds the overall error rate by at least ``min_difference``. Each reported slice has its size, error rate,
Wilson 95% interval, the difference to the overall rate and the adjusted p-value.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from modelcert.stages.explainability.columns import Coded


@dataclass(frozen=True)
class SliceSearch:
    tried: int
    weak_count: int
    overall_error: float
    rows: int
    weak: list[dict[str, Any]]
    weakest: list[dict[str, Any]]
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        return {"slices_tried": self.tried, "weak_count": self.weak_count, "overall_error_rate": self.overall_error,
                "rows": self.rows,
                "weak_slices": self.weak, "weakest_tried": self.weakest, "alpha": self.alpha,
                "metric": "error rate (1 - accuracy)",
                "test": "one-sided pooled two-proportion z-test, slice vs the rest; Benjamini-Hochberg FDR across "
                        "all slices tried; Wilson 95% interval"}


def _one_sided_z(e1: np.ndarray, n1: np.ndarray, e2: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """p-values of H1: error rate 1 > error rate 2, pooled variance (as statsmodels.stats.proportion
    .proportions_ztest with alternative='larger')."""
    from scipy.stats import norm

    p1, p2 = e1 / n1, e2 / n2
    pooled = (e1 + e2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p1 - p2) / se, 0.0)
    return norm.sf(z)


def find_weak_slices(columns: list[Coded], errors: np.ndarray, *, min_size: int, min_difference: float,
                     alpha: float, top: int) -> SliceSearch:
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.proportion import proportion_confint

    err = np.asarray(errors, dtype=float)
    n_all = len(err)
    e_all = float(err.sum())
    overall = e_all / n_all if n_all else 0.0
    names: list[str] = []
    sizes: list[np.ndarray] = []
    errs: list[np.ndarray] = []

    def add(codes: np.ndarray, k: int, label) -> None:  # noqa: ANN001 - a small local callback
        n = np.bincount(codes, minlength=k)
        e = np.bincount(codes, weights=err, minlength=k)
        keep = np.flatnonzero((n >= min_size) & (n_all - n >= min_size))
        names.extend(label(int(i)) for i in keep)
        sizes.append(n[keep])
        errs.append(e[keep])

    for c in columns:
        add(c.codes, c.k, lambda i, c=c: c.labels[i])
    for a, b in combinations(columns, 2):
        add(a.codes * b.k + b.codes, a.k * b.k, lambda i, a=a, b=b: f"{a.labels[i // b.k]} & {b.labels[i % b.k]}")
    if not names:
        return SliceSearch(0, 0, overall, n_all, [], [], alpha)
    n = np.concatenate(sizes).astype(float)
    e = np.concatenate(errs)
    p = _one_sided_z(e, n, e_all - e, n_all - n)
    reject, p_adj, _, _ = multipletests(p, alpha=alpha, method="fdr_bh")
    rate = e / n
    lo, hi = proportion_confint(np.round(e).astype(int), n.astype(int), alpha=0.05, method="wilson")
    diff = rate - overall
    weak = np.flatnonzero(reject & (diff >= min_difference))

    def row(i: int) -> dict[str, Any]:
        return {"slice": names[i], "size": int(n[i]), "error_rate": float(rate[i]),
                "ci95": [float(lo[i]), float(hi[i])], "difference": float(diff[i]), "p_value": float(p[i]),
                "p_adjusted": float(p_adj[i]), "significant": bool(reject[i]),
                "weak": bool(reject[i] and diff[i] >= min_difference)}

    weak_sorted = sorted(weak.tolist(), key=lambda i: (-diff[i], p_adj[i], names[i]))
    weakest = sorted(range(len(names)), key=lambda i: (p_adj[i], -diff[i], names[i]))[:top]
    return SliceSearch(len(names), len(weak_sorted), overall, n_all, [row(i) for i in weak_sorted[:top]],
                       [row(i) for i in weakest], alpha)
