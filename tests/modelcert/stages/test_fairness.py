"""Fairness stage: AIF360 metrics on crafted data with hand-computed answers, the favorable-label mapping,
degenerate groups, bootstrap intervals, and the three demo specs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from modelcert.errors import DataError
from modelcert.stages.fairness import STAGE, bootstrap_intervals, metrics_from_counts

ALL = ("disparate_impact", "statistical_parity_difference", "equal_opportunity_difference",
       "average_odds_difference", "false_positive_rate_difference", "false_negative_rate_difference",
       "base_rate_difference")


def get(out, name, subject):
    found = [c for c in out.checks if c.name == name and c.subject == subject]
    assert len(found) == 1, f"{name}/{subject}"
    return found[0]


def block(n_tp: int, n_fp: int, n_fn: int, n_tn: int, group: str) -> pd.DataFrame:
    """Rows with the given confusion counts (label y, prediction pred; 1 = positive class)."""
    y = [1] * n_tp + [0] * n_fp + [1] * n_fn + [0] * n_tn
    pred = [1] * (n_tp + n_fp) + [0] * (n_fn + n_tn)
    return pd.DataFrame({"g": group, "y": y, "pred": pred})


def crafted() -> pd.DataFrame:
    # privileged a: TP 50 FP 10 FN 10 TN 30 | unprivileged b: TP 20 FP 10 FN 20 TN 50
    return pd.concat([block(50, 10, 10, 30, "a"), block(20, 10, 20, 50, "b")], ignore_index=True)


def spec(fairness: dict | None = None, *, favorable=1, privileged=("a",), min_group_size: int = 30) -> dict:
    s: dict = {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "positive_label": 1, "favorable_label": favorable, "min_group_size": min_group_size,
                 "protected_attributes": {"g": {"privileged": list(privileged)}}},
    }
    if fairness is not None:
        s["checks"] = {"fairness": fairness}
    return s


# ---------------------------------------------------------------------------------------------- hand-computed
def test_crafted_values_favorable_is_positive(synthetic_ctx) -> None:
    out = STAGE.run(synthetic_ctx({"test": crafted()}, spec({"disparate_impact": {"min": 0.8, "max": 1.25}})))
    expected = {
        "disparate_impact": 0.3 / 0.6,
        "statistical_parity_difference": 0.3 - 0.6,
        "equal_opportunity_difference": 0.5 - 50 / 60,
        "average_odds_difference": 0.5 * ((10 / 60 - 10 / 40) + (0.5 - 50 / 60)),
        "false_positive_rate_difference": 10 / 60 - 10 / 40,
        "false_negative_rate_difference": 0.5 - 10 / 60,
        "base_rate_difference": 0.4 - 0.6,
    }
    for name, value in expected.items():
        assert get(out, name, "g").value == pytest.approx(value), name
    di = get(out, "disparate_impact", "g")
    assert di.passed is False and di.threshold["min"] == 0.8 and "0.5" in di.message
    assert get(out, "statistical_parity_difference", "g").passed is None  # not bounded: info
    assert out.status == "failed"
    priv = {c.name: c.value for c in out.checks if c.subject == "g=privileged"}
    assert priv == pytest.approx({"group_size": 100, "base_rate": 0.6, "selection_rate": 0.6,
                                  "true_positive_rate": 50 / 60, "false_positive_rate": 0.25,
                                  "false_negative_rate": 10 / 60})
    assert out.library == "aif360" and out.library_version == "0.6.1"
    json.dumps([dataclasses.asdict(c) for c in out.checks], allow_nan=False)
    json.dumps(out.summary, allow_nan=False)


def test_favorable_label_zero_flips_the_metrics(synthetic_ctx) -> None:
    """Same rows, favorable outcome = label 0 (e.g. 'does not reoffend'): a favorable prediction is pred 0."""
    out = STAGE.run(synthetic_ctx({"test": crafted()}, spec({"disparate_impact": {"min": 0.8, "max": 1.25}},
                                                            favorable=0)))
    # favorable selection: a 40/100, b 70/100. In favorable terms a: TP 30 FP 10 FN 10 TN 50; b: TP 50 FP 20 FN 10 TN 20
    expected = {
        "disparate_impact": 0.7 / 0.4,  # 1.75, not simply 1 / 0.5
        "statistical_parity_difference": 0.3,
        "equal_opportunity_difference": 50 / 60 - 30 / 40,
        "average_odds_difference": 0.5 * ((20 / 40 - 10 / 60) + (50 / 60 - 30 / 40)),
        "false_positive_rate_difference": 20 / 40 - 10 / 60,
        "false_negative_rate_difference": 10 / 60 - 10 / 40,
        "base_rate_difference": 0.6 - 0.4,
    }
    for name, value in expected.items():
        assert get(out, name, "g").value == pytest.approx(value), name
    assert get(out, "disparate_impact", "g").passed is False  # above max 1.25
    assert out.summary["favorable_in_0_1_encoding"] == 0
    assert get(out, "selection_rate", "g=unprivileged").value == pytest.approx(0.7)


def test_balanced_data_passes(synthetic_ctx) -> None:
    df = pd.concat([block(30, 10, 10, 30, "a"), block(30, 10, 10, 30, "b")], ignore_index=True)
    fairness = {m: {"abs_max": 0.01} for m in ALL if m != "disparate_impact"}
    fairness["disparate_impact"] = {"min": 0.99, "max": 1.01}
    out = STAGE.run(synthetic_ctx({"test": df}, spec(fairness)))
    assert out.status == "passed"
    assert get(out, "disparate_impact", "g").value == pytest.approx(1.0)
    for m in ALL:
        assert get(out, m, "g").passed is True


def test_numeric_range_attribute(synthetic_ctx) -> None:
    df = crafted().assign(age=lambda d: np.where(d.g == "a", 40, 20)).drop(columns="g")
    s = spec()
    s["data"]["protected_attributes"] = {"age": {"privileged": {"min": 25}}}
    out = STAGE.run(synthetic_ctx({"test": df}, s))
    assert get(out, "disparate_impact", "age").value == pytest.approx(0.5)
    assert out.summary["attributes"]["age"]["privileged"] == {"min": 25.0}


# ---------------------------------------------------------------------------------------------- degenerate
def test_small_group_fails_without_crashing(synthetic_ctx) -> None:
    df = pd.concat([block(50, 10, 10, 30, "a"), block(3, 2, 2, 3, "b")], ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.5}})))
    small = get(out, "group_size", "g=unprivileged")
    assert small.value == 10 and small.passed is False and "data.min_group_size 30" in small.message
    assert get(out, "group_size", "g=privileged").passed is True
    assert out.status == "failed" and [c.subject for c in out.failures] == ["g=unprivileged"]
    assert "caution" in get(out, "disparate_impact", "g").message


def test_empty_group_is_a_data_error(synthetic_ctx) -> None:
    with pytest.raises(DataError, match=r"data\.protected_attributes\.g: the privileged group is empty"):
        STAGE.run(synthetic_ctx({"test": crafted()}, spec(privileged=("zzz",))))


def test_disparate_impact_undefined_when_privileged_never_selected(synthetic_ctx) -> None:
    df = pd.concat([block(0, 0, 40, 40, "a"), block(20, 10, 20, 30, "b")], ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.8, "max": 1.25}})))
    di = get(out, "disparate_impact", "g")
    assert di.value is None and di.passed is False
    assert "undefined" in di.message and "no favorable predictions" in di.message
    assert di.detail["ci95"] is None
    assert out.status == "failed"


def test_bootstrap_interval_from_counts() -> None:
    priv, unpriv = np.array([50, 10, 10, 30.0]), np.array([20, 10, 20, 50.0])
    point = metrics_from_counts(priv, unpriv)
    a = bootstrap_intervals(priv, unpriv)
    b = bootstrap_intervals(priv, unpriv)
    assert a == b  # seeded
    for name in ALL:
        lo, hi = a[name]["ci95"]
        assert lo <= float(point[name]) <= hi, name
        assert a[name]["resamples"] == 200
    lo, hi = a["disparate_impact"]["ci95"]
    assert 0.3 < lo < 0.5 < hi < 0.8


def test_aif360_import_is_quiet() -> None:
    code = ("import logging; from modelcert.stages.fairness import import_aif360; import_aif360(); "
            "assert not logging.getLogger().handlers, logging.getLogger().handlers; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
    assert "will be unavailable" not in res.stderr and "tensorflow" not in res.stderr


# ---------------------------------------------------------------------------------------------- demo
def test_german_credit_passes(demo_ctx) -> None:
    out = STAGE.run(demo_ctx("german_credit"))
    assert out.status == "passed", [c.message for c in out.failures]
    assert get(out, "disparate_impact", "sex").value == pytest.approx(0.9797, abs=1e-3)
    assert get(out, "disparate_impact", "age").value == pytest.approx(0.9429, abs=1e-3)
    assert get(out, "equal_opportunity_difference", "sex").value == pytest.approx(0.0190, abs=1e-3)
    assert get(out, "equal_opportunity_difference", "age").value == pytest.approx(0.0833, abs=1e-3)
    assert get(out, "group_size", "age=unprivileged").value >= 30


def test_adult_income_fails_on_sex(demo_ctx) -> None:
    out = STAGE.run(demo_ctx("adult_income"))
    assert out.status == "failed"
    di = get(out, "disparate_impact", "sex")
    assert di.value == pytest.approx(0.319, abs=2e-3) and di.passed is False
    lo, hi = di.detail["ci95"]
    assert lo < di.value < hi < 0.8  # the whole interval is below the four-fifths rule
    assert get(out, "disparate_impact", "race").passed is False
    assert get(out, "equal_opportunity_difference", "sex").passed is True


def test_compas_audit_favorable_is_low_risk(demo_ctx) -> None:
    ctx = demo_ctx("compas_audit")
    out = STAGE.run(ctx)
    assert out.status == "failed" and out.summary["favorable_in_0_1_encoding"] == 0
    # independent recomputation from the raw columns: favorable prediction = score_text Low
    df = ctx.frame("test")
    low = df.score_text.eq("Low")
    white = df.race.eq("Caucasian")
    hand_di = low[~white].mean() / low[white].mean()
    di = get(out, "disparate_impact", "race")
    assert di.value == pytest.approx(hand_di) and di.value == pytest.approx(0.740, abs=2e-3)
    assert di.value < 0.8 and di.passed is False
    # FPR in favorable terms: P(low risk | reoffended); white defendants get it more often
    reoff = df.two_year_recid.eq(1)
    hand_fprd = low[~white & reoff].mean() - low[white & reoff].mean()
    fprd = get(out, "false_positive_rate_difference", "race")
    assert fprd.value == pytest.approx(hand_fprd) and fprd.value == pytest.approx(-0.160, abs=2e-3)
    assert fprd.passed is False
    assert get(out, "disparate_impact", "sex").passed is True
