"""modelcert.stats: the count bootstrap, analytic intervals, the p-value against a bound, Holm/BH, the verdict rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelcert import stats
from modelcert.thresholds import Threshold


def test_bootstrap_keeps_group_sizes_and_is_seeded() -> None:
    counts = np.array([[50, 10, 10, 30], [5, 0, 3, 2], [0, 0, 0, 0]])
    a = stats.bootstrap_counts(counts, resamples=300, rng=np.random.default_rng(3))
    b = stats.bootstrap_counts(counts, resamples=300, rng=np.random.default_rng(3))
    assert a.shape == (300, 3, 4) and np.array_equal(a, b)
    assert (a.sum(axis=2) == counts.sum(axis=1)).all()  # stratified: every resample keeps each group's size
    assert (a[:, 1, 1] == 0).all()  # an empty cell stays empty
    assert np.allclose(a.mean(axis=0)[0], counts[0], atol=1.5)  # centred on the observed counts


def test_percentile_interval_needs_ninety_percent_defined() -> None:
    values = np.tile(np.linspace(0, 1, 101)[:, None], (1, 2))
    values[:15, 1] = np.nan  # 85% defined
    lo, hi, share = stats.percentile_ci(values)
    assert lo[0] == pytest.approx(0.025) and hi[0] == pytest.approx(0.975) and share[0] == 1
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and share[1] == pytest.approx(86 / 101)


def test_analytic_intervals_are_statsmodels() -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

    lo, hi = stats.wilson(np.array([10, 0]), np.array([100, 0]))
    assert (lo[0], hi[0]) == pytest.approx(proportion_confint(10, 100, method="wilson"))
    assert np.isnan(lo[1]) and np.isnan(hi[1])
    lo, hi = stats.two_rates(np.array([30]), np.array([100]), np.array([60]), np.array([100]), "diff")
    assert (lo[0], hi[0]) == pytest.approx(confint_proportions_2indep(30, 100, 60, 100, method="newcomb"))
    lo, hi = stats.two_rates(np.array([30, 0]), np.array([100, 50]), np.array([60, 60]), np.array([100, 100]),
                             "ratio")
    expected = confint_proportions_2indep(30, 100, 60, 100, method="log", compare="ratio")
    assert (lo[0], hi[0]) == pytest.approx(expected) and lo[0] < 0.5 < hi[0]
    assert np.isnan(lo[1])  # zero count: no Katz interval (the stage falls back to the bootstrap)


def test_p_value_against_a_bound() -> None:
    t = Threshold(abs_max=0.1)
    assert stats.p_value_outside(0.3, 0.1, t) == pytest.approx(0.02275, abs=1e-5)  # z = 2
    assert stats.p_value_outside(-0.3, 0.1, t) == pytest.approx(0.02275, abs=1e-5)  # the nearest bound
    assert stats.p_value_outside(0.1, 0.1, t) == pytest.approx(0.5)  # on the bound
    assert stats.p_value_outside(0.0, 0.1, t) == pytest.approx(0.8413, abs=1e-4)  # inside: large
    assert stats.p_value_outside(0.3, 0.0, t) == 0.0 and stats.p_value_outside(0.0, 0.0, t) == 1.0
    assert stats.p_value_outside(None, 0.1, t) is None and stats.p_value_outside(0.3, math.nan, t) is None
    # a ratio on the log scale: 0.8 * e^-0.2 is 0.2 below log(0.8); se 0.1 -> z = 2
    ratio = Threshold(min=0.8, max=1.25)
    assert stats.p_value_outside(0.8 * math.exp(-0.2), 0.1, ratio, log=True) == pytest.approx(0.02275, abs=1e-5)
    assert stats.p_value_outside(0.0, 0.1, ratio, log=True) is None


def test_holm_and_bh_adjust_as_defined() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    # Holm: sorted 0.01*4, max(0.03*3, prev), max(0.04*2, prev), max(0.5*1, prev)
    assert stats.adjust(p, method="holm", alpha=0.05) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    # BH: p*m/rank with a running minimum from the top
    assert stats.adjust(p, method="bh", alpha=0.05) == pytest.approx([0.04, 0.05333, 0.05333, 0.5], abs=1e-5)
    assert stats.adjust([], method="holm", alpha=0.05) == []


def test_a_fail_needs_the_adjusted_p_value() -> None:
    assert stats.controlled_verdict("fail", 0.01, 0.05) == "fail"
    assert stats.controlled_verdict("fail", 0.05, 0.05) == "inconclusive"
    assert stats.controlled_verdict("fail", None, 0.05) == "inconclusive"
    assert stats.controlled_verdict("pass", 0.9, 0.05) == "pass"
    assert stats.controlled_verdict("inconclusive", 0.001, 0.05) == "inconclusive"


def test_settings_from_the_spec_then_defaults() -> None:
    from modelcert.spec import parse_spec

    base = {"model": {"name": "m", "version": "1", "owner": "a"}, "predictions": {"column": "p", "positive": [1]},
            "use_case": {"description": "d", "risk_tier": "high"},
            "data": {"test": "t.csv", "label": "y", "protected_attributes": {"s": {"privileged": [1]}}}}
    st = stats.settings(parse_spec(base))
    assert st["resamples"] >= 1000 and st["multiple_testing"] in ("holm", "bh") and 0 < st["alpha"] <= 0.2
    st = stats.settings(parse_spec({**base, "statistics": {"alpha": 0.01, "multiple_testing": "bh",
                                                           "bootstrap_resamples": 2000, "seed": 9}}))
    assert st == {"alpha": 0.01, "multiple_testing": "bh", "resamples": 2000, "seed": 9}
