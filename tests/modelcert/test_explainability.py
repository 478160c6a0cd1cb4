"""The explainability stage without a database: proxies (Adult without sex), weak slices (planted vs none),
the paired bootstrap and its verdicts, importance, predictions-only audits, and the spec/policy validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelcert.errors import SpecError
from modelcert.stages.explainability import compare
from modelcert.stages.explainability.columns import code_column
from modelcert.stages.explainability.proxies import delong_auc
from modelcert.stages.explainability.slices import find_weak_slices
from modelcert.thresholds import Threshold

ADULT_NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
ADULT_CATEGORICAL = ["workclass", "marital_status", "occupation", "relationship", "race"]  # no sex


# ------------------------------------------------------------------------------------------- proxies
def test_adult_model_without_sex_reaches_sex_through_proxies(demo_build: Path, synthetic_ctx: Any) -> None:
    """A model trained without ``sex`` on the demo Adult data: its features predict sex well above chance, through
    relationship / marital status, and the evidence names them."""
    from sklearn.linear_model import LogisticRegression

    from modelcert.demo.build import tabular_pipeline
    from modelcert.stages import get_stage

    train = pd.read_csv(demo_build / "adult_income_train.csv")
    test = pd.read_csv(demo_build / "adult_income_test.csv")
    features = ADULT_NUMERIC + ADULT_CATEGORICAL
    model = tabular_pipeline(ADULT_NUMERIC, ADULT_CATEGORICAL, LogisticRegression(max_iter=500))
    small = train.sample(n=4000, random_state=0)
    model.fit(small[features], small["income_gt_50k"])
    ctx = synthetic_ctx({"train": train, "test": test}, {
        "model": {"features": features},
        "data": {"label": "income_gt_50k", "protected_attributes": {"sex": {"privileged": ["Male"]}},
                 "extra_columns": ["fnlwgt", "education", "native_country"]},
    }, model)
    result = get_stage("explainability").run(ctx)
    proxy = next(c for c in result.checks if c.name == "max_proxy_auc" and c.subject == "sex")
    assert proxy.detail["ci95"][0] > 0.7, proxy.message
    assert {"relationship", "marital_status"} & set(proxy.detail["top_proxies"][:3]), proxy.detail["top_proxies"]
    assert "sex" not in proxy.detail["features"]
    assert result.summary["proxies"]["sex"]["rows"] == ctx.spec.checks.explainability.sample_size
    # importance came from SHAP on the pipeline's linear model, summed back to the input features
    imp = result.summary["importance"]
    assert imp["method"] == "shap.LinearExplainer" and {f["feature"] for f in imp["features"]} == set(features)
    assert imp["sample_rows"] == ctx.spec.checks.explainability.importance_sample_size
    assert set(imp["by_group"]["sex"]["privileged_top"]) <= set(features)


def test_delong_matches_sklearn_auc_and_covers_it() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = y * 0.8 + rng.normal(size=500)
    auc, (lo, hi), se = delong_auc(y, s)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert lo < auc < hi and se > 0
    # An independent check of the standard error: a bootstrap of the same data agrees within 25%.
    boots = [roc_auc_score(y[i], s[i]) for i in (rng.integers(0, 500, 500) for _ in range(300))]
    assert se == pytest.approx(float(np.std(boots)), rel=0.25)


# ------------------------------------------------------------------------------------------- slices
def _slice_data(seed: int, *, planted: bool) -> tuple[list[Any], np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 4000
    df = pd.DataFrame({"a": rng.choice(["a0", "a1", "a2", "a3"], n), "b": rng.uniform(0, 1, n),
                       "c": rng.choice(["c0", "c1", "c2"], n)})
    p = np.full(n, 0.15)
    if planted:
        p[(df["a"] == "a2") & (df["b"] > 0.75)] = 0.45
    errors = rng.uniform(size=n) < p
    return [code_column(df[c], bins=4) for c in df.columns], errors


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_planted_weak_slice_is_found(seed: int) -> None:
    columns, errors = _slice_data(seed, planted=True)
    found = find_weak_slices(columns, errors, min_size=50, min_difference=0.05, alpha=0.05, top=10)
    assert found.weak_count >= 1
    top = found.weak[0]
    assert "a=a2" in top["slice"] and "b in [" in top["slice"], found.weak[:3]
    assert top["ci95"][0] <= top["error_rate"] <= top["ci95"][1] and top["difference"] > 0.2


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_no_weak_slice_without_one(seed: int) -> None:
    columns, errors = _slice_data(seed, planted=False)
    found = find_weak_slices(columns, errors, min_size=50, min_difference=0.05, alpha=0.05, top=10)
    assert found.tried > 30  # single features and pairs were tried
    assert found.weak_count == 0 and not any(s["significant"] for s in found.weakest), found.weakest[:2]


def test_slice_z_test_is_statsmodels_two_proportion_test() -> None:
    from statsmodels.stats.proportion import proportions_ztest

    from modelcert.stages.explainability.slices import _one_sided_z

    p = _one_sided_z(np.array([30.0]), np.array([100.0]), np.array([150.0]), np.array([900.0]))
    _, expected = proportions_ztest([30, 150], [100, 900], alternative="larger")
    assert p[0] == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------------------- comparison
def _scores(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = 1 / (1 + np.exp(-(2.0 * (y - 0.5) + rng.normal(size=n))))
    bad = 1 / (1 + np.exp(-(0.6 * (y - 0.5) + rng.normal(size=n))))
    return y, good, bad


def test_weighted_auc_at_unit_weights_is_sklearns() -> None:
    from sklearn.metrics import roc_auc_score

    y, good, _ = _scores(0)
    good = np.round(good, 2)  # ties
    assert compare._Auc(y, good)(np.ones((1, len(y))))[0] == pytest.approx(roc_auc_score(y, good), abs=1e-12)


def test_paired_bootstrap_same_model_changes_nothing_and_passes() -> None:
    y, good, _ = _scores(1)
    sex = np.arange(len(y)) % 2 == 0
    metrics = compare.paired_bootstrap(y=y, reference=good, challenger=good.copy(), favorable_positive=True,
                                       groups={"sex": sex}, resamples=200, seed=0, label="champion")
    assert {m.name for m in metrics} == {"roc_auc", "accuracy", "impact_ratio"}
    assert all(np.all(m.changes == 0) for m in metrics)
    out = compare.verdicts([(m, Threshold(max=0.01)) for m in metrics], alpha=0.05, method="holm")
    assert [v["verdict"] for v in out] == ["pass"] * 3


def test_paired_bootstrap_worse_model_fails_and_matches_interval_rule() -> None:
    y, good, bad = _scores(2)
    metrics = compare.paired_bootstrap(y=y, reference=good, challenger=bad, favorable_positive=True, groups={},
                                       resamples=400, seed=0, label="champion")
    auc = next(m for m in metrics if m.name == "roc_auc")
    assert auc.change > 0.1
    (v,) = compare.verdicts([(auc, Threshold(max=0.01))], alpha=0.05, method="holm")
    assert v["verdict"] == "fail" == Threshold(max=0.01).interval_verdict(*auc.ci())
    # A bound the change straddles is inconclusive, by both rules.
    lo, hi = auc.ci()
    mid = Threshold(max=(lo + hi) / 2)
    (v,) = compare.verdicts([(auc, mid)], alpha=0.05, method="bh")
    assert v["verdict"] == "inconclusive" == mid.interval_verdict(lo, hi)


def test_impact_ratio_is_parity_symmetric() -> None:
    assert compare.impact_ratio(np.array([0.4, 0.8, 0.0]), np.array([0.8, 0.4, 0.0])).tolist() == [0.5, 0.5, 1.0]


# ------------------------------------------------------------------------------------------- audits
def test_predictions_only_audit_gets_proxies_and_slices_but_no_importance(synthetic_ctx: Any) -> None:
    from modelcert.stages import get_stage

    rng = np.random.default_rng(0)
    n = 600
    sex = rng.choice(["m", "f"], n)
    df = pd.DataFrame({"job": np.where(sex == "m", rng.choice(["x", "y"], n, p=[0.9, 0.1]),
                                       rng.choice(["x", "y"], n, p=[0.1, 0.9])),
                       "hours": rng.integers(20, 60, n), "sex": sex, "y": rng.integers(0, 2, n)})
    df["pred"] = np.where(rng.uniform(size=n) < 0.8, df["y"], 1 - df["y"])
    ctx = synthetic_ctx({"test": df}, {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}, "extra_columns": ["job",
                                                                                                         "hours"]},
    })
    result = get_stage("explainability").run(ctx)
    assert result.status in ("passed", "failed")
    assert "no model to explain" in result.summary["importance"]["not_applicable"]
    proxy = next(c for c in result.checks if c.name == "max_proxy_auc")
    assert proxy.detail["top_proxies"][0] == "job" and proxy.value > 0.8
    assert result.summary["slices"]["slices_tried"] > 0
    assert "nothing to compare" in result.summary["comparison"]["not_applicable"]
    # the text report shows the same tables
    from modelcert.explain_report import explainability_lines

    text = "\n".join(explainability_lines(result.summary))
    assert "Proxies of protected attributes" in text and "job (" in text
    assert "Feature importance: not applicable" in text and "What changed" in text


# ------------------------------------------------------------------------------------------- spec and policy
def german_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> Path:
    """The shipped German credit spec, written to ``tmp_path`` with absolute paths to the shipped data and model
    (both folders allowed as data roots), with top-level sections replaced by ``changes``."""
    import os

    import yaml

    from tests.conftest import REPO, SPECS

    spec = yaml.safe_load((SPECS / "german_credit.yaml").read_text())
    spec.pop("recertification", None)
    spec["model"]["artifact"] = str((SPECS / spec["model"]["artifact"]).resolve())
    for role in ("train", "test", "current"):
        spec["data"][role] = str((SPECS / spec["data"][role]).resolve())
    spec.update(changes)
    monkeypatch.setenv("MODELCERT_DATA_ROOTS", f"{tmp_path}{os.pathsep}{REPO / 'include'}")
    path = tmp_path / "german.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize(("checks", "expected"), [
    ({"max_proxy_auc": {"max": 0.95}}, "checks.explainability.max_proxy_auc.max: 0.95 is above the high-tier "
                                       "policy ceiling 0.85"),
    ({"roc_auc_max_drop": {"max": 0.2}}, "checks.explainability.roc_auc_max_drop.max: 0.2 is above the high-tier "
                                         "policy ceiling 0.01"),
    ({"roc_auc_max_drop": {"max": 0.005, "required": False}}, "checks.explainability.roc_auc_max_drop.required: "
                                                               "false is not allowed for the high tier"),
    ({"sample_size": 5}, "checks.explainability.sample_size: Input should be greater than or equal to 100"),
    ({"bogus": 1}, "checks.explainability.bogus: unknown key"),
])
def test_bad_explainability_checks_are_refused_naming_the_field(tmp_path: Path, demo_build: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                checks: dict[str, Any], expected: str) -> None:
    from modelcert.preflight import preflight

    with pytest.raises(SpecError) as err:
        preflight(german_spec(tmp_path, monkeypatch, checks={"explainability": checks}))
    assert expected in str(err.value), str(err.value)


def test_spec_may_tighten_the_change_bounds(tmp_path: Path, demo_build: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert.preflight import preflight

    checked = preflight(german_spec(tmp_path, monkeypatch,
                                    checks={"explainability": {"roc_auc_max_drop": {"max": 0.005}}}))
    ec = checked.spec.checks.explainability
    assert ec.roc_auc_max_drop.max == 0.005 and ec.impact_ratio_max_drop.max == 0.05  # the floor for the rest


def test_benchmark_needs_a_model_and_a_matching_hash(tmp_path: Path, demo_build: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert.errors import ArtifactError
    from modelcert.preflight import preflight
    from modelcert.spec import parse_spec

    audit = {"model": {"name": "m", "version": "1", "owner": "a"}, "predictions": {"column": "p", "positive": [1]},
             "use_case": {"description": "d", "risk_tier": "low"},
             "data": {"test": "t.csv", "label": "y", "protected_attributes": {"s": {"privileged": [1]}}},
             "benchmark": {"artifact": "b.skops", "sha256": "0" * 64}}
    with pytest.raises(SpecError, match="benchmark: a comparison needs the model itself"):
        parse_spec(audit)
    from tests.conftest import REPO

    artifact = str(REPO / "include" / "demo" / "models" / "german_credit.skops")
    with pytest.raises(ArtifactError, match="benchmark.sha256: the artifact .* hashes to"):
        preflight(german_spec(tmp_path, monkeypatch, benchmark={"artifact": artifact, "sha256": "0" * 64}))


def test_recertification_may_rerun_explainability_with_overrides() -> None:
    from modelcert.spec import merge_checks, parse_spec

    base = {"model": {"name": "m", "version": "1", "owner": "a"}, "predictions": {"column": "p", "positive": [1]},
            "use_case": {"description": "d", "risk_tier": "low"},
            "data": {"test": "t.csv", "label": "y", "protected_attributes": {"s": {"privileged": [1]}}},
            "recertification": {"current_data": "c.csv", "stages": ["explainability", "data_quality"],
                                "checks": {"explainability": {"max_weak_slices": {"max": 2}}}}}
    spec = parse_spec(base)
    assert spec.recertification is not None
    assert spec.recertification.effective_stages == ["data_quality", "explainability"]
    merged = merge_checks(spec.checks, spec.recertification.checks)
    assert merged.explainability.max_weak_slices.max == 2
    assert merged.explainability.max_proxy_auc == spec.checks.explainability.max_proxy_auc


def _codes_row_by_row(col: pd.Series) -> tuple[list[int], tuple[str, ...]]:
    """The definition ``code_column`` counts per distinct value: every row as text, counted, top levels kept."""
    from modelcert.stages.explainability.columns import MAX_LEVELS, MISSING

    values = col.astype(str).where(col.notna(), MISSING)
    keep = list(values.value_counts().index[:MAX_LEVELS])
    index = {v: i for i, v in enumerate(keep)}
    codes = [index.get(v, len(keep)) for v in values]
    labels = [f"{col.name} missing" if v == MISSING else f"{col.name}={v}" for v in keep]
    if len(keep) in codes:
        labels.append(f"{col.name}=other")
    return codes, tuple(labels)


@pytest.mark.parametrize("kind", ["text", "ints", "mixed", "floats", "bools", "categorical", "many_levels"])
def test_code_column_counts_distinct_values_as_converting_every_row_would(kind: str) -> None:
    rng = np.random.default_rng(7)
    n = 2_000
    cols = {
        "text": pd.Series(rng.choice(["a", "b", "c", "d"], n), dtype=object),
        "ints": pd.Series(rng.integers(0, 5, n)),
        # 1 and "1" are the same text; None and NaN are both missing
        "mixed": pd.Series(rng.choice(np.array(["x", "y", None, np.nan, 1, "1"], dtype=object), n), dtype=object),
        "floats": pd.Series(rng.choice([0.5, 1.0, 2.25, np.nan], n)),
        "bools": pd.Series(rng.choice([True, False], n)),
        "categorical": pd.Series(rng.choice(["p", "q", "r"], n)).astype("category"),
        # more levels than MAX_LEVELS, with ties in the counts: which ones are kept must not change
        "many_levels": pd.Series(np.repeat([f"v{i}" for i in range(50)], 40), dtype=object),
    }
    col = cols[kind].rename("f")
    coded = code_column(col, bins=1_000)
    assert coded is not None
    codes, labels = _codes_row_by_row(col)
    assert coded.codes.tolist() == codes
    assert coded.labels == labels
