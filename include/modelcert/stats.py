"""Intervals, p-values and multiple-testing control for judged metrics (fairness today; shared by any stage that
judges many comparisons at once).

Everything works on **confusion counts**, never on rows: a group's outcome is its [TP, FP, FN, TN] vector, so a
bootstrap resample of a group of a million rows is one multinomial draw of four numbers. That is why the fairness
CIs cost milliseconds where a row-resampling bootstrap (Fairlearn's ``MetricFrame`` recomputed per resample) costs
minutes (``bench/bench_fairness.py``).

Intervals (95%):

- **bootstrap**: :func:`bootstrap_counts` draws, for every group at once, ``resamples`` multinomial vectors with the
  group's size and observed cell shares (a stratified bootstrap: group sizes fixed = resampling rows within each
  group), seeded. A metric's interval is the 2.5/97.5 percentile of its resampled values (:func:`percentile_ci`),
  kept only when at least 90% of the resamples define the metric.
- **analytic**, where a closed form exists (statsmodels): Wilson for a rate, Newcombe (hybrid Wilson score) for a
  difference of two independent rates, Katz (log) for a ratio of two rates. The method name is stored with each
  interval.

Verdict rule (README "Confidence-aware verdicts"). For each judged comparison the 95% interval decides:
**pass** when the whole interval meets the bound, **fail** when none of it does, **inconclusive** when it straddles
(:meth:`modelcert.thresholds.Threshold.interval_verdict`). A stage judges many comparisons (groups x metrics), so a
*fail* additionally needs evidence that survives multiple-testing control: the one-sided p-value of the null
hypothesis "the metric meets the bound" (:func:`p_value_outside`) — the distance from the point estimate to the
nearest edge of the allowed region in units of the bootstrap standard error, normal approximation, on the log scale
for ratios — adjusted across all judged comparisons of the stage with Holm (family-wise error) or Benjamini-Hochberg
(false-discovery rate) (:func:`adjust`). A fail whose adjusted p is not below ``alpha`` becomes inconclusive.
Raw and adjusted p, the method and the number of comparisons are stored with every judged comparison.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np

from modelcert.thresholds import Threshold, Verdict

DEFAULT_RESAMPLES = 1000
DEFAULT_ALPHA = 0.05
DEFAULT_MULTIPLE_TESTING: Literal["holm", "bh"] = "holm"
#: A bootstrap interval needs the metric defined in at least this share of the resamples.
MIN_VALID_SHARE = 0.9
BOOTSTRAP_METHOD = "percentile bootstrap, multinomial resampling of per-group confusion counts (group sizes fixed)"
#: Our names for statsmodels' ``multipletests`` methods.
MULTITEST_METHODS = {"holm": "holm", "bh": "fdr_bh"}


# ------------------------------------------------------------------------------------------------ bootstrap
def bootstrap_counts(counts: np.ndarray, *, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resampled confusion counts, shape (resamples, G, 4), for counts of shape (G, 4): one multinomial draw per
    group and resample with the group's size and cell shares (stratified: every group keeps its size)."""
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.sum(axis=1)
    p = np.divide(counts, n[:, None], out=np.full(counts.shape, 0.25), where=n[:, None] > 0)
    return rng.multinomial(n, p, size=(resamples, len(counts))).astype(float)


def percentile_ci(values: np.ndarray, *, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, valid share) of the 95% percentile interval along ``axis``; NaN where fewer than 90% of the
    resamples define the value."""
    finite = np.isfinite(values)
    share = finite.mean(axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(np.where(finite, values, np.nan), [2.5, 97.5], axis=axis)
    ok = share >= MIN_VALID_SHARE
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), share


def bootstrap_se(values: np.ndarray, *, log: bool = False, axis: int = 0) -> np.ndarray:
    """Standard deviation of the resampled values (of their logarithm for a ratio), NaN when fewer than 90% of
    the resamples define it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log(values) if log else values
    finite = np.isfinite(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(np.where(finite, v, np.nan), axis=axis, ddof=1)
    return np.where(finite.mean(axis=axis) >= MIN_VALID_SHARE, sd, np.nan)


# ------------------------------------------------------------------------------------------------ analytic
def wilson(count: np.ndarray, nobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score 95% interval of count / nobs (statsmodels); NaN where nobs is 0."""
    from statsmodels.stats.proportion import proportion_confint

    count, nobs = np.asarray(count, float), np.asarray(nobs, float)
    safe = np.where(nobs > 0, nobs, 1.0)
    lo, hi = proportion_confint(np.minimum(count, safe), safe, alpha=0.05, method="wilson")
    bad = nobs <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def two_rates(count1: np.ndarray, nobs1: np.ndarray, count2: np.ndarray, nobs2: np.ndarray,
              compare: Literal["diff", "ratio"]) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of rate1 - rate2 (Newcombe) or rate1 / rate2 (Katz log), statsmodels
    ``confint_proportions_2indep``; NaN where it is not defined (an empty group, a zero count for a ratio)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    c1, n1, c2, n2 = (np.asarray(x, float) for x in (count1, nobs1, count2, nobs2))
    bad = (n1 <= 0) | (n2 <= 0)
    if compare == "ratio":
        bad |= (c1 <= 0) | (c2 <= 0) | (c1 >= n1) | (c2 >= n2)
    if bad.all():
        return np.full(c1.shape, np.nan), np.full(c1.shape, np.nan)
    s1, s2 = np.where(bad, 1.0, n1), np.where(bad, 1.0, n2)
    k1, k2 = np.where(bad, 0.5, c1), np.where(bad, 0.5, c2)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        lo, hi = confint_proportions_2indep(k1, s1, k2, s2, method="newcomb" if compare == "diff" else "log",
                                            compare=compare, alpha=0.05)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    bad |= ~np.isfinite(lo) | ~np.isfinite(hi)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


ANALYTIC_METHODS = {"wilson": "Wilson score (statsmodels proportion_confint)",
                    "newcombe": "Newcombe hybrid score, difference of two rates (statsmodels, method=newcomb)",
                    "katz_log": "Katz log, ratio of two rates (statsmodels, compare=ratio, method=log)",
                    "bootstrap": BOOTSTRAP_METHOD}


# ------------------------------------------------------------------------------------------------ p-values
def p_value_outside(value: float | None, se: float | None, threshold: Threshold, *, log: bool = False) -> float | None:
    """One-sided p-value of H0 "the metric meets the bound": with z = (distance of the estimate outside the
    allowed region, negative when inside) / se, p = P(Z >= z), Z standard normal. For a ratio (``log``) value,
    bounds and se are on the log scale (se from :func:`bootstrap_se` with ``log=True``). None when undefined."""
    from scipy.stats import norm

    if value is None or not math.isfinite(value) or se is None or not math.isfinite(se):
        return None
    lo, hi = threshold.allowed()
    if log:
        if value <= 0:
            return None
        value = math.log(value)
        lo = math.log(lo) if lo > 0 else -math.inf
        hi = math.log(hi) if hi > 0 else -math.inf
    outside = max(lo - value, value - hi)  # > 0 outside the region, <= 0 inside (minus the distance to the edge)
    if se <= 0:
        return 0.0 if outside > 0 else 1.0
    return float(norm.sf(outside / se))


def adjust(p_values: list[float], *, method: Literal["holm", "bh"], alpha: float) -> list[float]:
    """Holm or Benjamini-Hochberg adjusted p-values (statsmodels ``multipletests``), in the input order."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    _, adjusted, _, _ = multipletests(np.asarray(p_values, float), alpha=alpha, method=MULTITEST_METHODS[method])
    return [float(x) for x in adjusted]


def controlled_verdict(interval: Verdict, p_adjusted: float | None, alpha: float) -> Verdict:
    """The interval's verdict, except that a fail whose adjusted p-value is not below ``alpha`` (or has none) is
    inconclusive: the data do not show the bound is violated once the run's many comparisons are accounted for."""
    if interval == "fail" and (p_adjusted is None or p_adjusted >= alpha):
        return "inconclusive"
    return interval


def settings(spec: Any) -> dict[str, Any]:
    """alpha, multiple_testing, resamples and seed for a run: the spec's ``statistics`` section, which a run's
    stored (effective) spec always fills from the risk policy (``policy_rules.effective_statistics``); this module's
    defaults only for a spec evaluated outside a run (tests, benchmarks). The live policy file is never read here:
    a run is judged by the bar stored with it."""
    st = spec.statistics

    def pick(name: str, default: Any) -> Any:
        value = getattr(st, name, None)
        return default if value is None else value

    return {"alpha": float(pick("alpha", DEFAULT_ALPHA)),
            "multiple_testing": str(pick("multiple_testing", DEFAULT_MULTIPLE_TESTING)),
            "resamples": int(pick("bootstrap_resamples", DEFAULT_RESAMPLES)),
            "seed": int(st.seed)}
