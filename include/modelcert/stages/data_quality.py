"""Data quality with Great Expectations 1.x: an expectation suite built from the spec and the data, run on the
test set (and the training set when given) in an ephemeral, in-memory GX context.

What GX judges: required columns exist, declared dtypes, null fractions, value sets, ranges, a binary label that
contains the positive class, and the share of duplicated rows. What GX cannot judge and pandas does: train/test
leakage (GX validates one batch at a time and has no expectation comparing two batches) and the size of each
protected group (the group definition, a value list or a numeric range, lives in :meth:`EvalContext.privileged_mask`).

Every expectation result becomes one :class:`Check` named after the expectation, with the subject
``<dataset>.<column>`` (or ``<dataset>`` for table-level checks), the observed number as value, the bound as
threshold and a few JSON-safe keys of the GX result as detail.
"""

from __future__ import annotations

import gc
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelcert.context import COLLECT_ROWS, EvalContext
from modelcert.errors import DataError
from modelcert.spec import GroupRange
from modelcert.stages.base import Check, StageOutcome, outcome
from modelcert.thresholds import Threshold

LIBRARY = "great-expectations"

#: GX type names per declared dtype. For a column of pandas dtype ``object`` GX checks every value's Python type
#: (so numbers stored as text fail "numeric"); for any other dtype it compares the column dtype itself.
TYPE_LISTS: dict[str, list[str]] = {
    "numeric": [
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
        "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64",
        "int", "float",
    ],
    "string": ["str", "string", "StringDtype"],
    "boolean": ["bool", "boolean", "BooleanDtype"],
}

#: Keys of a GX result copied into a check's detail (JSON-safe, lists shortened).
_DETAIL_KEYS = (
    "observed_value",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "partial_unexpected_list",
    "partial_unexpected_counts",
    "partial_missing_list",
)
_PARTIAL = 10


@dataclass(frozen=True)
class _Planned:
    """One expectation of the suite and how to turn its result into a check."""

    kind: str  # exist | null | dtype | in_set | range | label_count | label_positive | duplicates
    dataset: str
    column: str | None
    threshold: dict[str, Any]
    required: bool = True
    bound: Threshold | None = None  # judged again on the observed value (null and duplicate fractions)


def _upper_bound(t: Threshold) -> float | None:
    """The tightest upper bound of a fraction threshold, used as GX's ``mostly = 1 - bound``."""
    bounds = [b for b in (t.max, t.abs_max, t.between[1] if t.between else None) if b is not None]
    return min(bounds) if bounds else None


def _mostly(t: Threshold) -> float:
    bound = _upper_bound(t)
    return 1.0 if bound is None else min(1.0, max(0.0, 1.0 - bound))


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, NaN/inf as None, long lists cut to ``_PARTIAL``."""
    if depth > 4:
        return str(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Index)):
        return [_jsonable(v, depth + 1) for v in list(value)[:_PARTIAL]]
    try:
        if pd.isna(value):  # NaT, pd.NA
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _coerce_label_value(series: pd.Series, value: Any) -> Any:
    """``data.positive_label`` in the column's own type, so GX's set comparison sees equal values."""
    if pd.api.types.is_numeric_dtype(series) and isinstance(value, str):
        try:
            num = float(value)
        except ValueError:
            return value
        return int(num) if num.is_integer() else num
    if not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return str(value)
    return value


def _comparable(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """One shared column of test and train with comparable dtypes (int vs float after a null, text vs number)."""
    if a.dtype == b.dtype:
        return a, b
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        return a.astype("float64"), b.astype("float64")
    return a.astype(str), b.astype(str)


def _aligned_row_hashes(test: pd.DataFrame, train: pd.DataFrame,
                        columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``pd.util.hash_pandas_object(frame[columns], index=False)`` of both frames after making each column pair
    comparable, computed one column at a time: the same numbers, without copying both frames' shared columns
    first (~2 GB of object columns for 10 M rows). pandas' row hash is a fold of per-column hashes
    (``combine_hash_arrays``, what ``hash_pandas_object`` does for a DataFrame); only its public wrapper takes a
    whole frame, so the fold is fed per column here."""
    from pandas.core.util.hashing import combine_hash_arrays

    def column_hashes(side: int) -> Any:
        for c in columns:
            col = _comparable(test[c], train[c])[side]
            yield pd.util.hash_pandas_object(col, index=False).to_numpy()

    return (combine_hash_arrays(column_hashes(0), len(columns)),
            combine_hash_arrays(column_hashes(1), len(columns)))


def _categorized(df: pd.DataFrame) -> pd.DataFrame:
    """The same rows and values, object columns as categoricals (a missing value stays missing); the other
    columns are not copied."""
    return pd.DataFrame({c: df[c].astype("category") if df[c].dtype == object else df[c] for c in df.columns},
                        index=df.index, copy=False)


class DataQualityStage:
    name = "data_quality"
    library = LIBRARY

    # ------------------------------------------------------------------ plan
    def _required_columns(self, ctx: EvalContext, dataset: str) -> list[str]:
        spec = ctx.spec
        cols: list[str] = [spec.data.label]
        if dataset == "test":
            cols += list(spec.data.protected_attributes)
            if spec.predictions is not None:
                cols.append(spec.predictions.column)
                if spec.predictions.score_column:
                    cols.append(spec.predictions.score_column)
            dq = spec.checks.data_quality
            cols += list(dq.dtypes) + list(dq.value_sets) + list(dq.ranges)
        if spec.model.artifact is not None:
            cols += ctx.features
        return list(dict.fromkeys(cols))

    def _plan(self, ctx: EvalContext, dataset: str, df: pd.DataFrame) -> list[tuple[Any, _Planned]]:
        """Expectations for one dataset. Column-level expectations only for columns that exist: a missing
        column fails its ``expect_column_to_exist`` and nothing else is asked of it."""
        import great_expectations.expectations as gxe

        spec = ctx.spec
        dq = spec.checks.data_quality
        present = set(df.columns)
        required = self._required_columns(ctx, dataset)
        # Train: the test-set constraints apply to the columns it has; only label and features are required.
        constrained = list(spec.data.protected_attributes) + list(dq.dtypes) + list(dq.value_sets) + list(dq.ranges)
        optional = list(dict.fromkeys(c for c in constrained if c in present and c not in required)) \
            if dataset == "train" else []
        plan: list[tuple[Any, _Planned]] = []

        for col in required:
            plan.append((gxe.ExpectColumnToExist(column=col),
                         _Planned("exist", dataset, col, {"exists": True, "required": True})))
        for col in required + optional:
            if col not in present:
                continue
            plan.append((gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=_mostly(dq.null_fraction)),
                         _Planned("null", dataset, col, dq.null_fraction.describe(), dq.null_fraction.required,
                                  dq.null_fraction)))
        for col, kind in dq.dtypes.items():
            if col in present:
                plan.append((gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=TYPE_LISTS[kind]),
                             _Planned("dtype", dataset, col, {"dtype": kind, "required": True})))
        for col, values in dq.value_sets.items():
            if col in present:
                plan.append((gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(values)),
                             _Planned("in_set", dataset, col, {"value_set": list(values), "required": True})))
        for col, rng in dq.ranges.items():
            if col in present:
                bounds = {k: v for k, v in (("min", rng.min), ("max", rng.max)) if v is not None}
                plan.append((gxe.ExpectColumnValuesToBeBetween(column=col, min_value=rng.min, max_value=rng.max),
                             _Planned("range", dataset, col, {**bounds, "inclusive": True, "required": True})))
        label = spec.data.label
        if label in present:
            plan.append((gxe.ExpectColumnUniqueValueCountToBeBetween(column=label, min_value=2, max_value=2),
                         _Planned("label_count", dataset, label, {"min": 2, "max": 2, "required": True})))
            pos = _coerce_label_value(df[label], spec.data.positive_label)
            plan.append((gxe.ExpectColumnDistinctValuesToContainSet(column=label, value_set=[pos]),
                         _Planned("label_positive", dataset, label, {"contains": [_jsonable(pos)], "required": True})))
        t = dq.duplicate_fraction
        columns = list(df.columns)
        if len(columns) >= 2:
            dup = gxe.ExpectCompoundColumnsToBeUnique(column_list=columns, mostly=_mostly(t))
        else:
            dup = gxe.ExpectColumnValuesToBeUnique(column=columns[0], mostly=_mostly(t))
        plan.append((dup, _Planned("duplicates", dataset, None, t.describe(), t.required, t)))
        return plan

    # ------------------------------------------------------------------ GX
    def _validate(self, dataset: str, df: pd.DataFrame, plan: list[tuple[Any, _Planned]]) -> list[dict[str, Any]]:
        """Run the suite on one in-memory batch; results in plan order."""
        import great_expectations as gx
        from great_expectations.data_context.data_context.context_factory import set_context
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        # In memory only: in-memory stores, no data docs site (GX's default ephemeral config reserves a temporary
        # docs folder), no analytics, no progress bars on stderr.
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        )
        context = gx.get_context(project_config=config, mode="ephemeral")
        source = context.data_sources.add_pandas(name="modelcert")
        asset = source.add_dataframe_asset(name=dataset)
        batch_definition = asset.add_batch_definition_whole_dataframe(name=f"{dataset}-whole")
        suite = context.suites.add(gx.ExpectationSuite(name=f"modelcert-{dataset}"))
        for i, (expectation, _) in enumerate(plan):
            expectation.meta = {"modelcert_index": i}
            suite.add_expectation(expectation)
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"modelcert-{dataset}", data=batch_definition, suite=suite)
        )
        try:
            result = validation.run(
                batch_parameters={"dataframe": df},
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": _PARTIAL},
            )
        finally:
            # gx.get_context() keeps the context it returns as the process's current project, and through it
            # (data source -> execution engine -> batch manager) the last validated DataFrame: the whole training
            # frame would stay alive for every later stage in a worker process. Drop the data source and forget
            # the context so the frame is freed when the stage lets go of it.
            context.data_sources.delete(name="modelcert")
            set_context(None)
        by_index: dict[int, dict[str, Any]] = {}
        for r in result.results:
            d = r.to_json_dict()
            by_index[int(d["expectation_config"]["meta"]["modelcert_index"])] = d
        # What GX computed for the batch (column copies made by dropna and boolean indexing, per metric) sits in
        # reference cycles among its objects: collect them now, before the next batch or the leakage hashes
        # allocate as much again (~0.3 GB per million training rows otherwise). A full collection costs ~0.3 s
        # with the stage libraries loaded: small batches leave it to Python.
        del result, validation, suite, batch_definition, asset, source, context
        if len(df) >= COLLECT_ROWS:
            gc.collect()
        missing = [i for i in range(len(plan)) if i not in by_index]
        if missing:  # never seen with GX 1.24; guards the index mapping above
            raise DataError(f"data.{dataset}: Great Expectations returned no result for {len(missing)} expectation(s)")
        return [by_index[i] for i in range(len(plan))]

    # ------------------------------------------------------------------ results -> checks
    @staticmethod
    def _detail(dataset: str, kind: str, res: dict[str, Any]) -> dict[str, Any]:
        body = res.get("result") or {}
        detail: dict[str, Any] = {"dataset": dataset}
        for key in _DETAIL_KEYS:
            if key in body:
                if kind == "duplicates" and key in ("partial_unexpected_list", "partial_unexpected_counts"):
                    continue  # whole rows (may hold personal data): keep their indices only
                detail[key] = _jsonable(body[key])
        if kind == "duplicates" and "partial_unexpected_index_list" in body:
            detail["partial_unexpected_index_list"] = _jsonable(body["partial_unexpected_index_list"])
        exc = res.get("exception_info") or {}
        messages = [exc.get("exception_message")] if "raised_exception" in exc else [
            v.get("exception_message") for v in exc.values() if isinstance(v, dict) and v.get("raised_exception")
        ]
        messages = [m for m in messages if m]
        if messages:
            detail["exception_message"] = str(messages[0])[:300]
        return detail

    def _check(self, p: _Planned, res: dict[str, Any]) -> Check:
        name = res["expectation_config"]["type"]
        success = bool(res.get("success"))
        body = res.get("result") or {}
        detail = self._detail(p.dataset, p.kind, res)
        subject = f"{p.dataset}.{p.column}" if p.column is not None else p.dataset
        subject = subject[:256]
        col = repr(p.column)
        where = f"data.{p.dataset}"
        n = body.get("element_count")
        unexpected = body.get("unexpected_count")
        value: float | None
        if p.kind == "exist":
            value = 1.0 if success else 0.0
            msg = f"column {col} is present in {where}" if success else (
                f"column {col} is missing from {where} (required by the spec)")
        elif p.kind in ("null", "duplicates"):
            value = float(unexpected) / float(n) if n and unexpected is not None else None
            assert p.bound is not None
            # GX judged with ``mostly``; the spec's threshold judges the same fraction (and any lower bound).
            detail["gx_success"] = success
            success = success and p.bound.check(value)
            what = "null fraction" if p.kind == "null" else "duplicated-row fraction"
            about = f"of {col} in {where}" if p.kind == "null" else f"in {where} (rows with an identical copy)"
            shown = "n/a" if value is None else f"{value:.4g}"
            msg = f"{what} {about}: {shown} (needs {p.bound.text()})"
        elif p.kind == "dtype":
            if unexpected is not None:  # object column: every value's type was checked
                value = float(unexpected)
                msg = f"{col} in {where}: {int(unexpected)} value(s) not of type {p.threshold['dtype']}"
            else:
                value = 0.0 if success else 1.0
                msg = f"{col} in {where} has dtype {body.get('observed_value')}; expected {p.threshold['dtype']}"
        elif p.kind in ("in_set", "range"):
            value = float(unexpected) if unexpected is not None else None
            bound = (f"in {p.threshold['value_set']}" if p.kind == "in_set"
                     else "within " + " and ".join(f"{k} {v:g}" for k, v in p.threshold.items() if k in ("min", "max")))
            msg = (f"{col} in {where}: {int(unexpected)} value(s) not {bound}" if unexpected is not None
                   else f"{col} in {where}: could not check values {bound}")
        elif p.kind == "label_count":
            observed = body.get("observed_value")
            value = float(observed) if observed is not None else None
            msg = (f"label {col} in {where} has {observed} distinct value(s); a binary label has exactly 2")
        elif p.kind == "label_positive":
            missing = body.get("missing_count")
            value = float(missing) if missing is not None else None
            msg = (f"positive label {p.threshold['contains'][0]!r} occurs in {col} of {where}" if success else
                   f"data.positive_label: {p.threshold['contains'][0]!r} does not occur in {col} of {where}")
        else:  # pragma: no cover - every planned kind is handled above
            raise AssertionError(p.kind)
        if not success and "exception_message" in detail:
            msg += f" (GX raised: {detail['exception_message']})"
        return Check(name=name, value=None if value is None else float(value), threshold=p.threshold,
                     passed=success, subject=subject, required=p.required, message=msg, detail=detail)

    # ------------------------------------------------------------------ pandas-only checks
    def _leakage(self, ctx: EvalContext, test: pd.DataFrame, train: pd.DataFrame | None) -> Check:
        t = ctx.spec.checks.data_quality.leakage_fraction
        if train is None:
            return Check.info("leakage_fraction", None, subject="test~train",
                              message="train/test leakage not computed: no training data given (data.train)",
                              detail={"reason": "no data.train"})
        # Great Expectations validates one batch at a time and has no expectation that compares two batches,
        # so the overlap is computed here: the share of test rows whose hash over all shared columns occurs in train.
        columns = [c for c in test.columns if c in set(train.columns)]
        if not columns:
            return Check(name="leakage_fraction", value=None, threshold=t.describe(), passed=False,
                         subject="test~train", required=t.required,
                         message="data.train and data.test share no column; cannot compare rows")
        test_hashes, train_hashes = _aligned_row_hashes(test, train, columns)
        leaked = np.isin(test_hashes, train_hashes)
        value = float(leaked.mean())
        return Check.judged("leakage_fraction", value, t, subject="test~train",
                            message=f"share of data.test rows also in data.train: {value:.4g} (needs {t.text()})",
                            detail={"leaked_rows": int(leaked.sum()), "test_rows": int(len(test)),
                                    "train_rows": int(len(train)), "columns_compared": len(columns),
                                    "columns_not_compared": [str(c) for c in test.columns
                                                             if c not in set(columns)][:25],
                                    })

    def _group_sizes(self, ctx: EvalContext, test: pd.DataFrame) -> list[Check]:
        minimum = ctx.spec.data.min_group_size
        threshold = Threshold(min=minimum)
        checks: list[Check] = []
        for attr, pa in ctx.spec.data.protected_attributes.items():
            if attr not in test.columns:
                continue  # its expect_column_to_exist already failed
            if pa.privileged is None:
                checks += self._category_sizes(attr, pa, test)
                continue
            try:
                priv = ctx.privileged_mask(attr, "test")
            except DataError as exc:
                checks.append(Check(name="min_group_size", value=None, threshold=threshold.describe(), passed=False,
                                    subject=f"test.{attr}", message=str(exc)))
                continue
            definition = (pa.privileged.model_dump(exclude_none=True) if isinstance(pa.privileged, GroupRange)
                          else [_jsonable(v) for v in pa.privileged])
            for group, mask in (("privileged", priv), ("unprivileged", ~priv)):
                size = int(mask.sum())
                checks.append(Check.judged(
                    "min_group_size", size, threshold, subject=f"test.{attr}={group}",
                    message=f"{group} group of {attr!r} in data.test has {size} row(s) "
                            f"(needs >= {minimum}, data.min_group_size)",
                    detail={"attribute": attr, "group": group, "privileged": definition, "rows": int(len(mask))},
                ))
        return checks

    @staticmethod
    def _category_sizes(attr: str, pa: Any, test: pd.DataFrame) -> list[Check]:
        """Attributes compared per category or band (``reference: max_rate``, ``bands``): each group's size is
        reported here; the fairness stage judges them (data.min_group_size and data.min_group_share) and excludes
        the small ones from its verdict instead of failing the run on them."""
        from modelcert import fairness_groups

        try:
            grouping = fairness_groups.attribute(test, attr, pa)
        except DataError as exc:
            return [Check(name="min_group_size", value=None, threshold=None, passed=False,
                          subject=f"test.{attr}", message=str(exc))]
        sizes = np.bincount(grouping.codes, minlength=len(grouping.labels))
        return [Check.info("min_group_size", int(size), subject=f"test.{attr}={label}",
                           message=f"group {label} of {attr!r} in data.test has {int(size)} row(s); judged per "
                                   "category by the fairness stage (data.min_group_size, data.min_group_share)",
                           detail={"attribute": attr, "group": label, "rows": int(len(test))})
                for label, size in zip(grouping.labels, sizes, strict=True) if size > 0]

    # ------------------------------------------------------------------ run
    def run(self, ctx: EvalContext) -> StageOutcome:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        frames: dict[str, pd.DataFrame] = {"test": ctx.frame("test")}
        if ctx.spec.data.train is not None:
            frames["train"] = ctx.frame("train")

        checks: list[Check] = []
        evaluated: dict[str, int] = {}
        failed: dict[str, int] = {}
        for dataset, df in frames.items():
            plan = self._plan(ctx, dataset, df)
            # The duplicated-rows expectation copies the whole frame several times inside GX (dropna, column
            # selection, the duplicated rows) and factorizes every column: it runs on the same rows with text
            # columns as categoricals (same values, same equality; 1 byte a cell instead of an 8-byte pointer).
            # GX's result is the same (tests/modelcert/stages/test_data_quality.py); the other expectations see
            # the frame as it is (GX judges a categorical column's type by its dtype, not its values).
            dup = [i for i, (_, p) in enumerate(plan) if p.kind == "duplicates"]
            rest = [i for i in range(len(plan)) if i not in set(dup)]
            by_index = dict(zip(rest, self._validate(dataset, df, [plan[i] for i in rest]), strict=True))
            if dup:
                by_index.update(zip(dup, self._validate(dataset, _categorized(df), [plan[i] for i in dup]),
                                    strict=True))
            results = [by_index[i] for i in range(len(plan))]
            ds_checks = [self._check(p, r) for (_, p), r in zip(plan, results, strict=True)]
            checks += ds_checks
            evaluated[dataset] = len(ds_checks)
            failed[dataset] = sum(1 for c in ds_checks if c.passed is False)

        checks.append(self._leakage(ctx, frames["test"], frames.get("train")))
        checks += self._group_sizes(ctx, frames["test"])

        summary = {
            "expectations_evaluated": sum(evaluated.values()),
            "expectations_failed": sum(failed.values()),
            "expectations_by_dataset": {d: {"evaluated": evaluated[d], "failed": failed[d]} for d in frames},
            "rows": {d: int(len(df)) for d, df in frames.items()},
            "columns": {d: int(df.shape[1]) for d, df in frames.items()},
            "checks_failed": sum(1 for c in checks if c.passed is False),
            "required_checks_failed": sum(1 for c in checks if c.failed_required),
        }
        return outcome(self.name, checks, library=LIBRARY, summary=summary)


STAGE = DataQualityStage()
