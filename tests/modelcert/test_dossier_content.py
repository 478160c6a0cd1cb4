"""The dossier's content from stage summaries alone (no database): the per-category fairness summary the fairness
stage writes (groups per category and intersection, comparisons with intervals and verdicts), findings order,
thresholds drawn, and the LL144 rate arithmetic."""

from __future__ import annotations

import pytest

from modelcert.dossier import content, frameworks


def _group(g: str, n: int, rate: float, *, ref: bool = False, excluded: str | None = None) -> dict:
    return {"group": g, "n": n, "share": n / 1000, "is_reference": ref, "excluded_because": excluded,
            "base_rate": 0.5, "selection_rate": rate, "tpr": rate + 0.05, "fpr": rate - 0.1, "fnr": 0.2,
            "precision": 0.7, "auc": 0.75, "calibration_error": 0.03,
            "counts": {"tp": 1, "fp": 1, "fn": 1, "tn": 1}, "selection_rate_ci95": [rate - 0.05, rate + 0.05]}


NEW_SCHEMA = {
    "rows": 1000, "favorable_label": 1, "positive_label": 1, "convention": "relative to the favorable outcome",
    "min_group_size": 30, "min_group_share": 0.02,
    "statistics": {"alpha": 0.05, "multiple_testing": "holm", "comparisons": 3,
                   "bootstrap": {"resamples": 1000, "seed": 0, "method": "percentile"}},
    "attributes": {
        "race": {"kind": "categorical", "columns": ["race"], "reference": "White", "reference_rule": "largest group",
                 "groups": [_group("White", 600, 0.6, ref=True), _group("Black", 380, 0.42),
                            _group("Other", 20, 0.5, excluded="under min_group_share")],
                 "comparisons": [
                     {"group": "Black", "metric": "disparate_impact", "value": 0.7, "ci95": [0.62, 0.79],
                      "ci_method": "bootstrap", "p_value": 0.001, "p_adjusted": 0.003,
                      "threshold": {"between": [0.8, 1.25]}, "verdict": "fail"},
                     {"group": "Black", "metric": "equal_opportunity_difference", "value": -0.08,
                      "ci95": [-0.15, -0.01], "ci_method": "bootstrap", "p_value": 0.04, "p_adjusted": 0.08,
                      "threshold": {"abs_max": 0.1}, "verdict": "inconclusive"}]},
        "sex×race": {"kind": "intersection", "columns": ["sex", "race"], "reference": "Male×White",
                     "reference_rule": "largest group",
                     "groups": [_group("Male×White", 350, 0.62, ref=True), _group("Female×Black", 200, 0.4)],
                     "comparisons": [{"group": "Female×Black", "metric": "disparate_impact", "value": 0.645,
                                      "ci95": [0.55, 0.74], "ci_method": "bootstrap", "p_value": 0.0,
                                      "p_adjusted": 0.0, "threshold": {"between": [0.8, 1.25]}, "verdict": "fail"}]},
    },
}


def test_per_category_schema_is_read_with_intersections_and_exclusions() -> None:
    view = {a["attribute"]: a for a in content.fairness_view(NEW_SCHEMA, [])}
    assert set(view) == {"race", "sex×race"} and view["sex×race"]["kind"] == "intersection"
    race = view["race"]
    assert [g["label"] for g in race["groups"]] == ["White", "Black", "Other"]
    assert race["groups"][2]["excluded"] == "under min_group_share"
    assert {c["verdict"] for c in race["comparisons"]} == {"fail", "inconclusive"}
    ratios = {r["category"]: r["impact_ratio"] for r in content.impact_ratio_rows(race["groups"])}
    assert ratios["Black"] == pytest.approx(0.42 / 0.6) and ratios["White"] == pytest.approx(1.0)


def test_fairness_section_draws_each_metric_with_its_bound_and_an_impact_plot_per_attribute() -> None:
    sec = content.stage_section({"stage": "fairness", "status": "failed", "summary": NEW_SCHEMA, "checks": [],
                                 "library": "aif360", "library_version": "0.6.1"})
    titles = [f["title"] for f in sec["figures"]]
    assert "disparate impact with 95% intervals" in titles
    assert "equal opportunity difference with 95% intervals" in titles
    assert "Impact ratios: sex×race" in titles and "Impact ratios: race" in titles
    di = next(f["svg"] for f in sec["figures"] if f["title"].startswith("disparate impact"))
    assert di.startswith("<svg") and "between 0.8 and 1.25" in di  # the title names the bound
    # Deterministic: the same summary draws the same bytes.
    again = content.stage_section({"stage": "fairness", "status": "failed", "summary": NEW_SCHEMA, "checks": [],
                                   "library": "aif360", "library_version": "0.6.1"})
    assert [f["svg"] for f in again["figures"]] == [f["svg"] for f in sec["figures"]]


def test_old_schema_reads_privileged_and_unprivileged_from_the_checks() -> None:
    old = {"attributes": {"sex": {"privileged": ["male"], "metrics": {"disparate_impact": 0.9},
                                  "groups": {"privileged": {"size": 100, "selection_rate": 0.5},
                                             "unprivileged": {"size": 50, "selection_rate": 0.45}}}}}
    checks = [{"name": "disparate_impact", "subject": "sex", "value": 0.9, "passed": True, "required": True,
               "threshold": {"min": 0.8, "max": 1.25}, "detail": {"ci95": [0.8, 1.0]}, "message": ""}]
    [a] = content.fairness_view(old, checks)
    assert [g["n"] for g in a["groups"]] == [100, 50]
    assert a["comparisons"][0]["ci95"] == [0.8, 1.0] and a["comparisons"][0]["verdict"] == "pass"


def test_findings_are_most_severe_first_and_inconclusive_counts() -> None:
    rep = {"stages": [{"stage": "fairness", "checks": [
        {"name": "disparate_impact", "subject": "race", "value": 0.7, "passed": False, "required": True,
         "threshold": {"min": 0.8}, "detail": {}, "message": "m"},
        {"name": "equal_opportunity_difference", "subject": "race", "value": -0.08, "passed": None,
         "required": True, "threshold": {"abs_max": 0.1}, "detail": {"verdict": "inconclusive"}, "message": "m"},
        {"name": "average_odds_difference", "subject": "race", "value": 0.2, "passed": False, "required": False,
         "threshold": {"abs_max": 0.15, "required": False}, "detail": {}, "message": "m"},
        {"name": "selection_rate", "subject": "race=x", "value": 0.5, "passed": None, "required": True,
         "threshold": None, "detail": {}, "message": "info"}]}]}
    found = content.findings(rep, [{"check": "checks.data_quality.duplicate_fraction", "text": "≤ 0.05"}])
    assert [(f["severity"], f["verdict"]) for f in found] == [
        ("high", "fail"), ("medium", "warn"), ("medium", "inconclusive"), ("low", "waived")]
    assert all(f["meaning"] for f in found)


def test_ll144_rates_exclude_small_and_unknown_categories_from_the_ratio() -> None:
    cats = ["A"] * 50 + ["B"] * 48 + ["C"] * 1 + ["Unknown"] * 1
    sel = [True] * 25 + [False] * 25 + [True] * 12 + [False] * 36 + [True] + [True]
    t = frameworks.ll144_rates(cats, sel, min_share=0.02)
    rows = {r["category"]: r for r in t["rows"]}
    assert rows["C"]["excluded"] == "under 2% of the data" and rows["Unknown"]["excluded"] == "unknown category"
    assert t["unknown"] == 1 and t["highest_rate"] == pytest.approx(0.5)  # C's rate 1.0 does not set the bar
    assert rows["B"]["impact_ratio"] == pytest.approx(0.25 / 0.5)
