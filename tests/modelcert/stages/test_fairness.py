"""Fairness stage: per-category metrics on crafted data with hand-computed answers, the favorable-label mapping,
bands, unknown values, intersections, small-group exclusion, three-way verdicts with multiple-testing control,
and the shipped demo specs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from modelcert.errors import DataError
from modelcert.stages.fairness import STAGE, grouped_auc, grouped_ece, metrics_from_counts

ALL = ("disparate_impact", "statistical_parity_difference", "equal_opportunity_difference",
       "average_odds_difference", "false_positive_rate_difference", "false_negative_rate_difference",
       "base_rate_difference")


def get(out, name, subject):
    found = [c for c in out.checks if c.name == name and c.subject == subject]
    assert len(found) == 1, f"{name}/{subject}: {[(c.name, c.subject) for c in out.checks]}"
    return found[0]


def group(out, attr, label):
    found = [g for g in out.summary["attributes"][attr]["groups"] if g["group"] == label]
    assert len(found) == 1, f"{attr}/{label}"
    return found[0]


def block(n_tp: int, n_fp: int, n_fn: int, n_tn: int, g: str, **extra) -> pd.DataFrame:
    """Rows with the given confusion counts (label y, prediction pred; 1 = positive class)."""
    y = [1] * n_tp + [0] * n_fp + [1] * n_fn + [0] * n_tn
    pred = [1] * (n_tp + n_fp) + [0] * (n_fn + n_tn)
    return pd.DataFrame({"g": g, "y": y, "pred": pred, **extra})


def crafted() -> pd.DataFrame:
    # reference a: TP 50 FP 10 FN 10 TN 30 | b: TP 20 FP 10 FN 20 TN 50
    return pd.concat([block(50, 10, 10, 30, "a"), block(20, 10, 20, 50, "b")], ignore_index=True)


def spec(fairness: dict | None = None, *, favorable=1, attrs: dict | None = None, min_group_size: int = 30,
         statistics: dict | None = None, **data) -> dict:
    s: dict = {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "positive_label": 1, "favorable_label": favorable, "min_group_size": min_group_size,
                 "protected_attributes": attrs or {"g": {"privileged": ["a"]}}, **data},
    }
    if fairness is not None:
        s["checks"] = {"fairness": fairness}
    if statistics is not None:
        s["statistics"] = statistics
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
        assert get(out, name, "g=b").value == pytest.approx(value), name
    di = get(out, "disparate_impact", "g=b")
    assert di.verdict == "fail" and di.passed is False and di.threshold["min"] == 0.8 and "0.5" in di.message
    assert di.detail["ci_method"] == "katz_log" and di.detail["p_adjusted"] < 0.05
    spd = get(out, "statistical_parity_difference", "g=b")
    assert spd.passed is None and spd.verdict is None and spd.detail["ci_method"] == "newcombe"  # unbounded: info
    assert get(out, "average_odds_difference", "g=b").detail["ci_method"] == "bootstrap"
    assert out.status == "failed"
    a = group(out, "g", "a")
    assert a["is_reference"] and a["n"] == 100 and a["share"] == 0.5
    assert (a["base_rate"], a["selection_rate"], a["tpr"], a["fpr"], a["fnr"], a["precision"]) == pytest.approx(
        (0.6, 0.6, 50 / 60, 0.25, 10 / 60, 50 / 60))
    assert a["counts"] == {"tp": 50, "fp": 10, "fn": 10, "tn": 30}
    lo, hi = a["selection_rate_ci95"]
    assert lo < 0.6 < hi
    attr = out.summary["attributes"]["g"]
    assert attr["kind"] == "categorical" and attr["reference"] == "a" and attr["reference_rule"] == "declared"
    comp = [c for c in attr["comparisons"] if c["metric"] == "disparate_impact"]
    assert comp == [dict(comp[0], group="b", verdict="fail", ci_method="katz_log")]
    stats = out.summary["statistics"]
    assert stats["comparisons"] == 1 and stats["multiple_testing"] == "holm" and stats["alpha"] == 0.05
    assert stats["bootstrap"]["resamples"] == 1000
    assert out.library == "aif360"
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
        assert get(out, name, "g=b").value == pytest.approx(value), name
    assert get(out, "disparate_impact", "g=b").verdict == "fail"  # above max 1.25
    assert out.summary["favorable_in_0_1_encoding"] == 0
    b = group(out, "g", "b")
    assert b["selection_rate"] == pytest.approx(0.7)
    # the positive-class reading (ProPublica's): FPR = positive prediction among label 0 = 1 - favorable TPR
    assert b["positive_class"]["fpr"] == pytest.approx(10 / 60) == pytest.approx(b["fnr"])
    assert b["positive_class"]["fnr"] == pytest.approx(20 / 40) == pytest.approx(b["fpr"])


def test_balanced_data_passes(synthetic_ctx) -> None:
    df = pd.concat([block(300, 100, 100, 300, "a"), block(300, 100, 100, 300, "b")], ignore_index=True)
    fairness = {m: {"abs_max": 0.1} for m in ALL if m != "disparate_impact"}
    fairness["disparate_impact"] = {"min": 0.8, "max": 1.25}
    out = STAGE.run(synthetic_ctx({"test": df}, spec(fairness)))
    assert out.status == "passed"
    assert get(out, "disparate_impact", "g=b").value == pytest.approx(1.0)
    for m in ALL:
        assert get(out, m, "g=b").verdict == "pass", m
    assert out.summary["statistics"]["comparisons"] == 7


def test_every_category_is_its_own_group(synthetic_ctx) -> None:
    df = pd.concat([block(50, 10, 10, 30, "a"), block(20, 10, 20, 50, "b"), block(40, 10, 10, 40, "c")],
                   ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.8}})))
    assert get(out, "disparate_impact", "g=b").value == pytest.approx(0.3 / 0.6)
    assert get(out, "disparate_impact", "g=c").value == pytest.approx(0.5 / 0.6)
    assert [g["group"] for g in out.summary["attributes"]["g"]["groups"]] == ["a", "b", "c"]


def test_privileged_values_form_one_reference_group(synthetic_ctx) -> None:
    df = pd.concat([block(50, 10, 10, 30, "a"), block(40, 20, 10, 30, "a2"), block(20, 10, 20, 50, "b")],
                   ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec(attrs={"g": {"privileged": ["a", "a2"]}})))
    ref = group(out, "g", "a | a2")
    assert ref["is_reference"] and ref["n"] == 200 and ref["selection_rate"] == pytest.approx(120 / 200)
    assert get(out, "disparate_impact", "g=b").value == pytest.approx(0.3 / 0.6)


def test_max_rate_reference(synthetic_ctx) -> None:
    df = pd.concat([block(50, 10, 10, 30, "a"), block(20, 10, 20, 50, "b"), block(60, 20, 10, 10, "c")],
                   ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.8}},
                                                     attrs={"g": {"reference": "max_rate"}})))
    attr = out.summary["attributes"]["g"]
    assert attr["reference"] == "c" and attr["reference_rule"] == "max_rate"  # selection rate 0.8
    assert get(out, "disparate_impact", "g=a").value == pytest.approx(0.6 / 0.8)
    assert get(out, "disparate_impact", "g=b").value == pytest.approx(0.3 / 0.8)
    assert not [c for c in out.checks if c.subject == "g=c" and c.name == "disparate_impact"]


def test_numeric_range_attribute(synthetic_ctx) -> None:
    df = crafted().assign(age=lambda d: np.where(d.g == "a", 40, 20)).drop(columns="g")
    out = STAGE.run(synthetic_ctx({"test": df}, spec(attrs={"age": {"privileged": {"min": 25}}})))
    assert get(out, "disparate_impact", "age=<25").value == pytest.approx(0.5)
    attr = out.summary["attributes"]["age"]
    assert attr["kind"] == "privileged_range" and attr["reference"] == ">=25"
    assert attr["definition"] == {"privileged": {"min": 25.0}}


def test_bands_with_declared_and_max_rate_reference(synthetic_ctx) -> None:
    ages = {"a": 30, "b": 20, "c": 70}
    df = pd.concat([block(50, 10, 10, 30, "a"), block(20, 10, 20, 50, "b"), block(40, 10, 10, 40, "c")],
                   ignore_index=True)
    df["age"] = df.g.map(ages)
    df.loc[df.index[:5], "age"] = 25  # lower edge belongs to the band above: 25 is in 25-40
    df = df.drop(columns="g")
    out = STAGE.run(synthetic_ctx({"test": df}, spec(attrs={"age": {"bands": [25, 40, 60], "reference": "25-40"}},
                                                     min_group_size=1)))
    attr = out.summary["attributes"]["age"]
    assert attr["kind"] == "bands" and attr["reference"] == "25-40"
    assert [(g["group"], g["n"], g["excluded_because"] is None) for g in attr["groups"]] == [
        ("<25", 100, True), ("25-40", 100, True), ("40-60", 0, False), (">=60", 100, True)]
    assert "0 rows" in group(out, "age", "40-60")["excluded_because"]
    assert get(out, "disparate_impact", "age=<25").value == pytest.approx(0.3 / 0.6)
    out2 = STAGE.run(synthetic_ctx({"test": df}, spec(attrs={"age": {"bands": [25, 40, 60], "reference": "max_rate"}})))
    assert out2.summary["attributes"]["age"]["reference"] == "25-40"


def test_bands_need_a_numeric_column(synthetic_ctx) -> None:
    with pytest.raises(DataError, match=r"data\.protected_attributes\.g: bands needs a numeric column"):
        STAGE.run(synthetic_ctx({"test": crafted()}, spec(attrs={"g": {"bands": [1], "reference": "max_rate"}})))


def test_unknown_values_are_counted_and_never_judged(synthetic_ctx) -> None:
    df = crafted()
    df["g"] = df["g"].astype(object)
    df.loc[df.index[:3], "g"] = np.nan
    df.loc[df.index[3:5], "g"] = " "
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.1}}, min_group_size=1,
                                                     min_group_share=0.0)))
    unknown = group(out, "g", "unknown")
    assert unknown["n"] == 5 and unknown["excluded_because"].startswith("unknown value")
    assert unknown["counts"] == {"tp": 5, "fp": 0, "fn": 0, "tn": 0}
    assert sum(g["n"] for g in out.summary["attributes"]["g"]["groups"]) == 200  # nothing dropped
    assert not [c for c in out.checks if c.subject == "g=unknown" and c.verdict is not None]
    info = get(out, "group_size", "g=unknown")
    assert info.passed is None and info.detail["excluded_because"].startswith("unknown value")


def test_intersections_every_combination(synthetic_ctx) -> None:
    parts = []
    for sex, rate in (("F", 0.3), ("M", 0.6)):
        for race, shift in (("x", 0.0), ("y", 0.1)):
            sel = int(100 * (rate + shift))
            parts.append(block(sel // 2, sel - sel // 2, 50 - sel // 2, 50 - (sel - sel // 2), "g", sex=sex,
                               race=race))
    df = pd.concat(parts, ignore_index=True).drop(columns="g")
    attrs = {"sex": {"privileged": ["M"]}, "race": {"privileged": ["y"]}}
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.8}}, attrs=attrs,
                                                     intersections=[["sex", "race"]])))
    inter = out.summary["attributes"]["sex×race"]
    assert inter["kind"] == "intersection" and inter["columns"] == ["sex", "race"]
    assert inter["reference"] == "M × y" and inter["reference_rule"] == "declared"
    assert [(g["group"], g["n"]) for g in inter["groups"]] == [("F × x", 100), ("F × y", 100), ("M × x", 100),
                                                                ("M × y", 100)]
    di = get(out, "disparate_impact", "sex×race=F × x")
    assert di.value == pytest.approx(0.3 / 0.7) and di.verdict == "fail"
    assert get(out, "disparate_impact", "sex×race=M × x").value == pytest.approx(0.6 / 0.7)
    attrs["race"] = {"reference": "max_rate"}
    out2 = STAGE.run(synthetic_ctx({"test": df}, spec(attrs=attrs, intersections=[["sex", "race"]])))
    assert out2.summary["attributes"]["sex×race"]["reference_rule"] == "max_rate"
    assert out2.summary["attributes"]["sex×race"]["reference"] == "M × y"


def test_one_percent_group_is_reported_as_excluded(synthetic_ctx) -> None:
    """LL144 small-category rule: 40 rows are above min_group_size 30 but only 1% of 4,000 rows."""
    df = pd.concat([block(1000, 200, 200, 600, "a"), block(500, 300, 300, 860, "b"), block(10, 10, 10, 10, "tiny")],
                   ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.8}})))
    tiny = group(out, "g", "tiny")
    assert tiny["n"] == 40 and tiny["share"] == pytest.approx(0.01)
    assert tiny["excluded_because"] == "share 1.00% < data.min_group_share 0.02"
    assert tiny["selection_rate"] == pytest.approx(0.5) and tiny["counts"]["tp"] == 10  # reported with its rates
    check = get(out, "group_size", "g=tiny")
    assert check.value == 40 and check.passed is None and "excluded" in check.message
    assert not [c for c in out.checks if c.subject == "g=tiny" and c.name != "group_size"]
    assert not [c for c in out.summary["attributes"]["g"]["comparisons"] if c["group"] == "tiny"]


def test_small_reference_group_fails_the_attribute(synthetic_ctx) -> None:
    df = pd.concat([block(3, 2, 2, 3, "a"), block(50, 10, 10, 30, "b")], ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.5}})))
    small = get(out, "group_size", "g=a")
    assert small.value == 10 and small.passed is False and "reference group a is excluded" in small.message
    assert out.status == "failed" and out.summary["attributes"]["g"]["comparisons"] == []


def test_no_comparison_means_the_required_check_was_not_evaluated(synthetic_ctx) -> None:
    df = pd.concat([block(50, 10, 10, 30, "a"), block(3, 2, 2, 3, "b")], ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.5}})))
    assert out.status == "error" and "checks.fairness.disparate_impact was not evaluated" in out.reason
    assert "no group besides the reference a is large enough" in out.reason
    assert get(out, "group_size", "g=b").detail["excluded_because"] == "10 rows < data.min_group_size 30"


def test_empty_reference_group_is_a_data_error(synthetic_ctx) -> None:
    with pytest.raises(DataError, match=r"data\.protected_attributes\.g: the privileged group is empty"):
        STAGE.run(synthetic_ctx({"test": crafted()}, spec(attrs={"g": {"privileged": ["zzz"]}})))


def test_disparate_impact_undefined_when_reference_never_selected(synthetic_ctx) -> None:
    df = pd.concat([block(0, 0, 40, 40, "a"), block(20, 10, 20, 30, "b")], ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.8, "max": 1.25}})))
    di = get(out, "disparate_impact", "g=b")
    assert di.value is None and di.passed is False and di.verdict == "fail"
    assert "undefined" in di.message and "no favorable predictions" in di.message
    assert di.detail["ci95"] is None
    assert out.status == "failed"


# ---------------------------------------------------------------------------------------------- verdicts
def near_bound() -> pd.DataFrame:
    """b's impact ratio 0.66 vs a: the Katz interval [~0.56, ~0.78] is below 0.8, with a one-sided p ~ 0.01."""
    return pd.concat([block(100, 100, 100, 100, "a"), block(66, 66, 134, 134, "b")], ignore_index=True)


def test_straddling_interval_is_inconclusive(synthetic_ctx) -> None:
    out = STAGE.run(synthetic_ctx({"test": near_bound()}, spec({"disparate_impact": {"min": 0.6}})))
    di = get(out, "disparate_impact", "g=b")
    lo, hi = di.detail["ci95"]
    assert lo < 0.6 < di.value < hi  # straddles: neither pass nor fail
    assert di.verdict == "inconclusive" and di.passed is None and di.required
    assert out.status == "passed"  # the stage does not fail on it; the policy decides what inconclusive does
    out = STAGE.run(synthetic_ctx({"test": near_bound()}, spec({"disparate_impact": {"min": 0.5}})))
    assert get(out, "disparate_impact", "g=b").verdict == "pass"


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_multiple_testing_turns_a_marginal_fail_into_inconclusive(synthetic_ctx, method: str) -> None:
    one = STAGE.run(synthetic_ctx({"test": near_bound()}, spec({"disparate_impact": {"min": 0.8}},
                                                               statistics={"multiple_testing": method})))
    di = get(one, "disparate_impact", "g=b")
    assert di.detail["ci95"][1] < 0.8 and di.verdict == "fail"
    assert di.detail["comparisons"] == 1 and di.detail["p_adjusted"] == pytest.approx(di.detail["p_value"])
    assert 0.001 < di.detail["p_value"] < 0.05
    # Same data, six more bounded metrics (comfortably met): seven comparisons, the marginal fail is not enough.
    many = {m: {"abs_max": 0.9} for m in ALL if m != "disparate_impact"}
    many["disparate_impact"] = {"min": 0.8}
    out = STAGE.run(synthetic_ctx({"test": near_bound()}, spec(many, statistics={"multiple_testing": method})))
    di = get(out, "disparate_impact", "g=b")
    assert di.detail["ci95"][1] < 0.8 and di.detail["interval_verdict"] == "fail"
    assert di.detail["comparisons"] == 7 and di.detail["multiple_testing"] == method
    assert di.detail["p_adjusted"] >= 0.05 > di.detail["p_value"]
    assert di.verdict == "inconclusive" and "not below alpha 0.05" in di.message
    assert out.summary["statistics"]["multiple_testing"] == method
    comp = next(c for c in out.summary["attributes"]["g"]["comparisons"] if c["metric"] == "disparate_impact")
    assert comp["verdict"] == "inconclusive" and comp["p_adjusted"] == di.detail["p_adjusted"]


def test_resamples_and_seed_come_from_the_spec(synthetic_ctx) -> None:
    s = spec({"average_odds_difference": {"abs_max": 0.5}}, statistics={"bootstrap_resamples": 500, "seed": 7})
    a = STAGE.run(synthetic_ctx({"test": crafted()}, s))
    b = STAGE.run(synthetic_ctx({"test": crafted()}, s))
    assert a.summary["statistics"]["bootstrap"] == {**a.summary["statistics"]["bootstrap"], "resamples": 500,
                                                    "seed": 7}
    assert get(a, "average_odds_difference", "g=b").detail["ci95"] == get(b, "average_odds_difference",
                                                                           "g=b").detail["ci95"]


# ---------------------------------------------------------------------------------------------- helpers
def test_metrics_broadcast_over_groups() -> None:
    ref = np.array([50, 10, 10, 30.0])
    groups = np.array([[20, 10, 20, 50.0], [50, 10, 10, 30.0]])
    m = metrics_from_counts(ref, groups)
    assert m["disparate_impact"] == pytest.approx([0.5, 1.0])
    assert m["equal_opportunity_difference"] == pytest.approx([0.5 - 50 / 60, 0.0])


def test_grouped_auc_and_ece_match_the_single_group_computations() -> None:
    from sklearn.metrics import roc_auc_score

    from modelcert.stages.performance import expected_calibration_error

    rng = np.random.default_rng(0)
    n = 3000
    codes = rng.integers(0, 3, n)
    y = rng.integers(0, 2, n)
    score = np.round(np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1), 2)  # rounded: many ties
    auc = grouped_auc(codes, 4, score, y)
    ece = grouped_ece(codes, 4, score, y)
    for g in range(3):
        m = codes == g
        assert auc[g] == pytest.approx(roc_auc_score(y[m], score[m]), abs=1e-12)
        assert ece[g] == pytest.approx(expected_calibration_error(y[m], score[m])[0], abs=1e-12)
    assert np.isnan(auc[3]) and np.isnan(ece[3])


def test_aif360_import_is_quiet() -> None:
    code = ("import logging; from modelcert.stages.fairness import import_aif360; import_aif360(); "
            "assert not logging.getLogger().handlers, logging.getLogger().handlers; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
    assert "will be unavailable" not in res.stderr and "tensorflow" not in res.stderr


# ---------------------------------------------------------------------------------------------- demo
def test_german_credit(demo_ctx) -> None:
    out = STAGE.run(demo_ctx("german_credit"))
    assert not out.failures, [c.message for c in out.failures]
    assert get(out, "disparate_impact", "sex=female").value == pytest.approx(0.9797, abs=1e-3)
    assert get(out, "disparate_impact", "age=<25").value == pytest.approx(0.9429, abs=1e-3)
    assert get(out, "equal_opportunity_difference", "sex=female").value == pytest.approx(0.0190, abs=1e-3)
    eod = get(out, "equal_opportunity_difference", "age=<25")
    assert eod.value == pytest.approx(0.0833, abs=1e-3)
    # 35 young applicants: the interval is wide and straddles |x| <= 0.1, which the point estimate would hide
    assert eod.verdict == "inconclusive" and eod.detail["ci95"][0] < -0.1 < 0.1 < eod.detail["ci95"][1]


def test_adult_income_fails_on_sex_with_intersections(demo_ctx) -> None:
    out = STAGE.run(demo_ctx("adult_income"))
    assert out.status == "failed"
    di = get(out, "disparate_impact", "sex=Female")
    assert di.value == pytest.approx(0.319, abs=2e-3) and di.verdict == "fail"
    lo, hi = di.detail["ci95"]
    assert lo < di.value < hi < 0.8  # the whole interval is below the four-fifths rule
    assert get(out, "disparate_impact", "race=Black").verdict == "fail"
    inter = out.summary["attributes"]["sex×race"]
    assert inter["reference"] == "Male × White"
    by = {g["group"]: g for g in inter["groups"]}
    assert by["Female × Black"]["n"] == 690 and by["Female × Black"]["excluded_because"] is None
    assert by["Female × Amer-Indian-Eskimo"]["n"] == 55
    assert by["Female × Amer-Indian-Eskimo"]["excluded_because"].startswith("share 0.38% < data.min_group_share")
    assert get(out, "disparate_impact", "sex×race=Female × Black").verdict == "fail"
    assert all(g["auc"] is not None and g["calibration_error"] is not None for g in inter["groups"] if g["n"] > 100)


def test_compas_audit_every_race_category(demo_ctx) -> None:
    ctx = demo_ctx("compas_audit")
    out = STAGE.run(ctx)
    assert out.status == "failed" and out.summary["favorable_in_0_1_encoding"] == 0
    df = ctx.frame("test")
    low = df.score_text.eq("Low")
    white = df.race.eq("Caucasian")
    black = df.race.eq("African-American")
    di = get(out, "disparate_impact", "race=African-American")
    assert di.value == pytest.approx(low[black].mean() / low[white].mean()) and di.verdict == "fail"
    groups = {g["group"]: g for g in out.summary["attributes"]["race"]["groups"]}
    assert set(groups) == {"African-American", "Asian", "Caucasian", "Hispanic", "Native American", "Other"}
    assert groups["Native American"]["excluded_because"] == "11 rows < data.min_group_size 30"
    assert groups["Caucasian"]["is_reference"]


def test_a_long_category_is_clipped_in_the_subject_not_in_the_summary(synthetic_ctx) -> None:
    long = "b" * 300
    df = pd.concat([block(50, 10, 10, 30, "a"), block(20, 10, 20, 50, long)], ignore_index=True)
    out = STAGE.run(synthetic_ctx({"test": df}, spec({"disparate_impact": {"min": 0.8}})))
    assert all(len(c.subject) <= 256 for c in out.checks)
    di = [c for c in out.checks if c.name == "disparate_impact"]
    assert len(di) == 1 and di[0].subject.startswith("g=bbb") and di[0].subject.endswith("…")
    assert group(out, "g", long)["n"] == 100
