"""Data quality stage (Great Expectations): every check can pass and fail, on tiny seeded data and on the demo."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelcert.errors import DataError
from modelcert.stages import get_stage
from modelcert.stages.data_quality import STAGE


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    return pd.DataFrame({
        "x1": rng.normal(0, 1, n).round(6),
        "cat": rng.choice(["a", "b", "c"], n),
        "sex": rng.choice(["male", "female"], n),
        "age": rng.integers(18, 60, n),
        "pred": np.where(rng.random(n) < 0.8, label, 1 - label),
        "label": label,
    })


def spec(**data_quality: Any) -> dict[str, Any]:
    """An audit spec (predictions column, no model) with two protected attributes."""
    return {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {
            "label": "label",
            "protected_attributes": {"sex": {"privileged": ["male"]}, "age": {"privileged": {"min": 25}}},
            "min_group_size": 30,
        },
        "checks": {"data_quality": data_quality},
    }


def run(synthetic_ctx, frames: dict[str, pd.DataFrame], s: dict[str, Any]):
    return STAGE.run(synthetic_ctx(frames=frames, spec=s))


def find(out, name: str, subject: str):
    hits = [c for c in out.checks if c.name == name and c.subject == subject]
    assert len(hits) == 1, f"{name}/{subject}: {[(c.name, c.subject) for c in out.checks]}"
    return hits[0]


def assert_json(out) -> None:
    json.dumps([dataclasses.asdict(c) for c in out.checks], allow_nan=False)
    json.dumps(out.summary, allow_nan=False)


def test_registry_exposes_the_stage():
    stage = get_stage("data_quality")
    assert stage is STAGE
    assert (stage.name, stage.library) == ("data_quality", "great-expectations")


def test_clean_data_passes_with_concrete_values(synthetic_ctx):
    test, train = frame(300, seed=1), frame(600, seed=2)
    out = run(synthetic_ctx, {"train": train, "test": test},
              spec(dtypes={"x1": "numeric", "cat": "string"}, value_sets={"cat": ["a", "b", "c"]},
                   ranges={"age": {"min": 18, "max": 100}}))
    assert out.status == "passed", [c.message for c in out.failures]
    assert out.library == "great-expectations" and out.library_version.startswith("1.")
    assert out.summary["rows"] == {"test": 300, "train": 600}
    assert out.summary["expectations_failed"] == 0
    assert out.summary["expectations_evaluated"] == out.summary["expectations_by_dataset"]["test"]["evaluated"] + \
        out.summary["expectations_by_dataset"]["train"]["evaluated"]
    for col in ("label", "sex", "age", "pred", "x1", "cat"):
        exists = find(out, "expect_column_to_exist", f"test.{col}")
        assert (exists.passed, exists.value) == (True, 1.0)
    null = find(out, "expect_column_values_to_not_be_null", "test.label")
    assert (null.passed, null.value, null.threshold) == (True, 0.0, {"max": 0.05, "required": True})
    assert null.detail["element_count"] == 300 and null.detail["unexpected_count"] == 0
    assert find(out, "expect_column_unique_value_count_to_be_between", "test.label").value == 2.0
    assert find(out, "expect_column_distinct_values_to_contain_set", "train.label").passed is True
    assert find(out, "expect_column_values_to_be_in_type_list", "test.x1").detail["observed_value"] == "float64"
    leak = find(out, "leakage_fraction", "test~train")
    assert (leak.passed, leak.value, leak.detail["leaked_rows"]) == (True, 0.0, 0)
    males = int((test["sex"] == "male").sum())
    assert find(out, "min_group_size", "test.sex=privileged").value == males
    assert find(out, "min_group_size", "test.sex=unprivileged").value == 300 - males
    assert find(out, "min_group_size", "test.age=privileged").value == int((test["age"] >= 25).sum())
    assert_json(out)


@pytest.mark.parametrize("max_null, passed", [(0.05, False), (0.2, True)])
def test_null_fraction_judged_against_threshold(synthetic_ctx, max_null, passed):
    test = frame(300, seed=3)
    test.loc[test.index[:30], "x1"] = np.nan  # 10 % nulls
    out = run(synthetic_ctx, {"test": test}, spec(null_fraction={"max": max_null}, dtypes={"x1": "numeric"}))
    check = find(out, "expect_column_values_to_not_be_null", "test.x1")
    assert check.value == pytest.approx(0.1)
    assert check.passed is passed and check.threshold == {"max": max_null, "required": True}
    assert check.detail["unexpected_count"] == 30 and check.detail["gx_success"] is passed
    assert out.status == ("passed" if passed else "failed")


def test_out_of_set_and_out_of_range_values_fail(synthetic_ctx):
    test = frame(300, seed=4)
    test.loc[test.index[:7], "cat"] = "zzz"
    out = run(synthetic_ctx, {"test": test},
              spec(value_sets={"cat": ["a", "b", "c"], "sex": ["male", "female"]},
                   ranges={"age": {"min": 18, "max": 50}}))
    bad_set = find(out, "expect_column_values_to_be_in_set", "test.cat")
    assert (bad_set.passed, bad_set.value) == (False, 7.0)
    assert set(bad_set.detail["partial_unexpected_list"]) == {"zzz"}
    assert bad_set.threshold["value_set"] == ["a", "b", "c"]
    assert find(out, "expect_column_values_to_be_in_set", "test.sex").passed is True
    rng = find(out, "expect_column_values_to_be_between", "test.age")
    assert rng.passed is False and rng.value == float((test["age"] > 50).sum()) > 0
    assert rng.threshold == {"min": 18.0, "max": 50.0, "inclusive": True, "required": True}
    assert out.status == "failed"


def test_range_bounds_are_inclusive(synthetic_ctx):
    test = frame(300, seed=5)
    out = run(synthetic_ctx, {"test": test},
              spec(ranges={"age": {"min": float(test["age"].min()), "max": float(test["age"].max())}}))
    assert find(out, "expect_column_values_to_be_between", "test.age").value == 0.0
    assert out.status == "passed"


def test_declared_dtypes(synthetic_ctx):
    test = frame(300, seed=6)
    test["num_as_text"] = test["x1"].astype(str)
    test.loc[test.index[:3], "num_as_text"] = "unknown"  # read back as an object column of text
    out = run(synthetic_ctx, {"test": test},
              spec(dtypes={"x1": "numeric", "age": "numeric", "cat": "string", "sex": "numeric",
                           "num_as_text": "numeric"}))
    assert find(out, "expect_column_values_to_be_in_type_list", "test.x1").passed is True
    assert find(out, "expect_column_values_to_be_in_type_list", "test.age").passed is True
    assert find(out, "expect_column_values_to_be_in_type_list", "test.cat").passed is True
    sex = find(out, "expect_column_values_to_be_in_type_list", "test.sex")
    assert (sex.passed, sex.value) == (False, 300.0)  # every value is text
    text = find(out, "expect_column_values_to_be_in_type_list", "test.num_as_text")
    assert (text.passed, text.value) == (False, 300.0)
    assert out.status == "failed"


def test_non_binary_label_fails(synthetic_ctx):
    test = frame(300, seed=7)
    test.loc[test.index[:5], "label"] = 2
    out = run(synthetic_ctx, {"test": test}, spec())
    count = find(out, "expect_column_unique_value_count_to_be_between", "test.label")
    assert (count.passed, count.value) == (False, 3.0)
    assert count.threshold == {"min": 2, "max": 2, "required": True}
    assert out.status == "failed"


def test_positive_label_must_occur(synthetic_ctx):
    s = spec()
    s["data"]["positive_label"] = 5
    out = run(synthetic_ctx, {"test": frame(300, seed=8)}, s)
    check = find(out, "expect_column_distinct_values_to_contain_set", "test.label")
    assert (check.passed, check.value) == (False, 1.0)
    assert "data.positive_label" in check.message


@pytest.mark.parametrize("required", [True, False])
def test_duplicated_rows(synthetic_ctx, required):
    base = frame(300, seed=9)
    test = pd.concat([base, base.iloc[:30]], ignore_index=True)  # 30 rows twice: 60 rows have an identical copy
    out = run(synthetic_ctx, {"test": test}, spec(duplicate_fraction={"max": 0.05, "required": required}))
    dup = find(out, "expect_compound_columns_to_be_unique", "test")
    assert dup.value == pytest.approx(60 / 330)
    assert dup.passed is False and dup.required is required
    assert dup.detail["unexpected_count"] == 60 and "partial_unexpected_list" not in dup.detail  # no row contents
    assert out.status == ("failed" if required else "passed")

    clean = run(synthetic_ctx, {"test": base}, spec(duplicate_fraction={"max": 0.05, "required": required}))
    assert find(clean, "expect_compound_columns_to_be_unique", "test").value == 0.0
    assert clean.status == "passed", [c.message for c in clean.failures]


def test_leakage_detected_when_test_copies_train(synthetic_ctx):
    train, own = frame(400, seed=10), frame(180, seed=11)
    test = pd.concat([own, train.iloc[:20]], ignore_index=True)
    out = run(synthetic_ctx, {"train": train, "test": test}, spec(leakage_fraction={"max": 0.0}))
    leak = find(out, "leakage_fraction", "test~train")
    assert leak.value == pytest.approx(20 / 200)
    assert (leak.passed, leak.detail["leaked_rows"], leak.threshold) == (False, 20, {"max": 0.0, "required": True})
    assert out.status == "failed"

    tolerant = run(synthetic_ctx, {"train": train, "test": test}, spec(leakage_fraction={"max": 0.2}))
    assert find(tolerant, "leakage_fraction", "test~train").passed is True


def test_leakage_not_computed_without_train(synthetic_ctx):
    out = run(synthetic_ctx, {"test": frame(300, seed=12)}, spec())
    leak = find(out, "leakage_fraction", "test~train")
    assert (leak.passed, leak.value, leak.required) == (None, None, False)
    assert "no training data" in leak.message
    assert out.summary["rows"] == {"test": 300}


def test_too_small_protected_group_fails(synthetic_ctx):
    test = frame(300, seed=13)
    test["sex"] = "male"
    test.loc[test.index[:10], "sex"] = "female"
    out = run(synthetic_ctx, {"test": test}, spec())
    small = find(out, "min_group_size", "test.sex=unprivileged")
    assert (small.passed, small.value, small.threshold) == (False, 10.0, {"min": 30.0, "required": True})
    assert find(out, "min_group_size", "test.sex=privileged").passed is True
    assert out.status == "failed"


def test_per_category_attributes_report_each_group_size(synthetic_ctx):
    """reference: max_rate / bands: every group's size is reported; the fairness stage judges (and excludes) them,
    so a small category does not fail data quality."""
    test = frame(300, seed=15)
    test.loc[test.index[:5], "cat"] = "rare"
    s = spec()
    s["data"]["protected_attributes"] = {"cat": {"reference": "max_rate"},
                                         "age": {"bands": [30, 45], "reference": "max_rate"}}
    out = run(synthetic_ctx, {"test": test}, s)
    rare = find(out, "min_group_size", "test.cat=rare")
    assert (rare.value, rare.passed) == (5.0, None) and "judged per category by the fairness stage" in rare.message
    for label, mask in (("<30", test.age < 30), ("30-45", (test.age >= 30) & (test.age < 45)), (">=45", test.age >= 45)):
        assert find(out, "min_group_size", f"test.age={label}").value == int(mask.sum())
    assert not [c for c in out.checks if c.name == "min_group_size" and c.passed is False]


def test_missing_required_column_is_a_failed_check_not_a_crash(synthetic_ctx):
    test = frame(300, seed=14).drop(columns=["sex", "pred"])
    out = run(synthetic_ctx, {"test": test}, spec(value_sets={"sex": ["male", "female"]}))
    assert out.status == "failed"
    for col in ("sex", "pred"):
        missing = find(out, "expect_column_to_exist", f"test.{col}")
        assert (missing.passed, missing.value) == (False, 0.0)
        assert repr(col) in missing.message and "missing" in missing.message
    assert not [c for c in out.checks if c.subject.startswith("test.sex") and c.name != "expect_column_to_exist"]
    assert find(out, "min_group_size", "test.age=privileged").passed is True
    assert_json(out)


def test_model_features_are_required_in_test_and_train(synthetic_ctx):
    from sklearn.linear_model import LogisticRegression

    train, test = frame(300, seed=15), frame(200, seed=16)
    model = LogisticRegression().fit(train[["x1", "age"]], train["label"])
    s = spec()
    del s["predictions"]
    s["model"] = {"features": ["x1", "age"]}
    out = STAGE.run(synthetic_ctx(frames={"train": train.drop(columns=["x1"]), "test": test}, spec=s, model=model))
    assert find(out, "expect_column_to_exist", "test.x1").passed is True
    assert find(out, "expect_column_to_exist", "train.x1").passed is False
    assert out.status == "failed"


def test_missing_file_raises_a_field_named_data_error(synthetic_ctx):
    ctx = synthetic_ctx(frames={"test": frame(50, seed=17)}, spec=spec())
    (ctx.base_dir / "test.csv").unlink()
    with pytest.raises(DataError, match=r"data\.test: file .* does not exist"):
        STAGE.run(ctx)


@pytest.mark.slow
def test_german_credit_demo_passes(demo_ctx):
    out = STAGE.run(demo_ctx("german_credit"))
    assert out.status == "passed", [c.message for c in out.failures]
    assert out.summary["rows"] == {"test": 200, "train": 600}
    assert out.summary["expectations_failed"] == 0
    assert find(out, "leakage_fraction", "test~train").value == 0.0
    assert find(out, "expect_column_values_to_be_between", "test.age").value == 0.0
    assert find(out, "min_group_size", "test.age=unprivileged").value >= 30
    features = demo_ctx("german_credit").features
    assert {f"test.{f}" for f in features} <= {c.subject for c in out.checks if c.name == "expect_column_to_exist"}
    assert_json(out)


@pytest.mark.slow
def test_compas_audit_demo(demo_ctx):
    out = STAGE.run(demo_ctx("compas_audit"))
    assert out.status == "passed", [c.message for c in out.failures]
    assert out.summary["rows"] == {"test": 6172}
    assert find(out, "expect_column_values_to_be_in_set", "test.score_text").value == 0.0
    assert find(out, "expect_column_to_exist", "test.decile_score").passed is True  # predictions.score_column
    assert find(out, "leakage_fraction", "test~train").passed is None


def test_leakage_row_hashes_are_pandas_row_hashes_of_the_aligned_frames():
    """Hashed one column at a time (no copy of both frames), the row hashes are exactly pandas' hashes of the
    aligned frames as before: int vs float after a null, number vs text, nulls, booleans, categoricals."""
    from modelcert.stages.data_quality import _aligned_row_hashes, _comparable

    rng = np.random.default_rng(3)
    n = 500
    test = pd.DataFrame({
        "i": rng.integers(0, 5, n),
        "f": rng.integers(0, 5, n).astype(float),
        "t": rng.choice(["a", "b", None], n),
        "mixed": rng.choice(["1", "2", "x"], n),
        "b": rng.random(n) < 0.5,
        "c": pd.Categorical(rng.choice(["u", "v"], n)),
    })
    train = test.sample(frac=1.0, random_state=1).reset_index(drop=True)
    train["f"] = train["f"].astype("int64")  # float in test, int in train
    train["mixed"] = rng.integers(1, 3, n)  # text in test, numbers in train
    train.loc[::7, "t"] = np.nan
    columns = list(test.columns)
    a, b = test[columns].copy(), train[columns].copy()
    for c in columns:
        a[c], b[c] = _comparable(a[c], b[c])
    expected = (pd.util.hash_pandas_object(a, index=False).to_numpy(),
                pd.util.hash_pandas_object(b, index=False).to_numpy())
    got = _aligned_row_hashes(test, train, columns)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert not np.array_equal(got[0], got[1])  # the frames differ: the comparison can fail


def test_great_expectations_does_not_keep_the_validated_frame_alive(synthetic_ctx):
    """GX keeps its last context (and through it the last batch's DataFrame) as the process's current project;
    the stage lets go of it, so a worker does not carry the training frame into the next stages."""
    import gc
    import weakref

    ctx = synthetic_ctx(frames={"test": frame(200, seed=5), "train": frame(400, seed=6)}, spec=spec())
    out = STAGE.run(ctx)
    assert out.summary["rows"] == {"test": 200, "train": 400}
    refs = [weakref.ref(ctx._frames[d]) for d in ("test", "train")]
    ctx._frames.clear()
    del ctx
    gc.collect()
    assert [r() is None for r in refs] == [True, True]


def test_duplicates_on_categorized_text_give_gx_the_same_result():
    """The duplicated-rows expectation runs on the frame with text columns as categoricals: GX's result is the
    one it gives on the object columns (nulls, rows all missing, mixed Python types in one column)."""
    import great_expectations.expectations as gxe

    from modelcert.stages.data_quality import _categorized

    rng = np.random.default_rng(0)
    n = 5_000
    df = pd.DataFrame({"a": rng.integers(0, 4, n), "t": rng.choice(["x", "y", None], n),
                       "u": rng.choice(["1", "2", None], n),
                       "m": pd.Series(rng.choice([1, "1", 2.5, None, "a"], n), dtype=object)})
    df.loc[5:9, ["t", "u", "m"]] = None
    df.loc[5:9, "a"] = 3
    df = pd.concat([df, df.head(3)], ignore_index=True)  # some rows certainly duplicated
    compact = _categorized(df)
    assert [str(t) for t in compact.dtypes] == ["int64", "category", "category", "category"]

    def result(frame: pd.DataFrame, mostly: float) -> dict[str, Any]:
        planned = [(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(frame.columns), mostly=mostly), None)]
        res = dict(STAGE._validate("test", frame, planned)[0])
        res.pop("expectation_config")
        return res

    for mostly in (0.5, 1.0):
        expected = result(df, mostly)
        assert expected["result"]["unexpected_count"] > 0
        assert result(compact, mostly) == expected
