"""Data drift with Evidently 0.7 (``Report`` + ``DataDriftPreset``): reference data (``data.reference``, else the
training data) against production-like data (``data.current``).

Columns compared: ``checks.drift.columns`` when given, else the model's features, else (a third-party audit without
a model) every column both datasets share except the label and the predictions columns, leaving out what is not a
distribution to compare: personal data listed in ``governance.pii_columns``, identifiers (a distinct value per row or
an id-like name), dates and free text. The excluded columns and why are part of the summary.

Evidently picks the statistical test per column (and its default threshold) unless ``checks.drift.column_threshold``
overrides the threshold. The stage is judged on the share of drifted columns against ``checks.drift.max_drifted_share``
(inclusive); each column's score, test, threshold and verdict is stored as an informational check.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any

import pandas as pd

from modelcert.context import EvalContext
from modelcert.errors import DataError
from modelcert.stages.base import Check, StageOutcome, not_applicable, outcome
from modelcert.thresholds import Threshold

LIBRARY = "evidently"
_ID_NAME = re.compile(r"^(id|uuid|guid|.*_id|.*_uuid|id_.*)$", re.IGNORECASE)
#: Audit mode: a text column with more distinct values than this share of its rows is free text, not a category.
FREE_TEXT_SHARE = 0.5
#: Audit mode: a text column is a date when this share of a sample parses as one.
DATE_SHARE = 0.9


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _is_text(s: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)


def _looks_like_dates(s: pd.Series) -> bool:
    sample = s.dropna().astype(str).head(200)
    if sample.empty:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= DATE_SHARE)


def _exclusion_reason(name: str, ref: pd.Series, cur: pd.Series, pii: set[str]) -> str | None:
    """Why an audit column is not a distribution to compare, or None to keep it."""
    if name in pii:
        return "personal data (governance.pii_columns)"
    if ref.isna().all() or cur.isna().all():
        return "all values null in data.reference or data.current"
    if pd.api.types.is_datetime64_any_dtype(ref):
        return "date/time column"
    if _ID_NAME.match(str(name)):
        return "identifier (id-like name)"
    non_null = ref.dropna()
    if _is_text(ref):
        if _looks_like_dates(ref):
            return "date column (text that parses as dates)"
        if len(non_null) >= 20 and non_null.nunique() == len(non_null):
            return "identifier (a distinct value per row)"
        if len(non_null) >= 20 and non_null.nunique() > FREE_TEXT_SHARE * len(non_null):
            return f"free text ({non_null.nunique()} distinct values in {len(non_null)} rows)"
    elif pd.api.types.is_integer_dtype(ref) and len(non_null) >= 20 and non_null.nunique() == len(non_null):
        return "identifier (a distinct integer per row)"
    return None


class DriftStage:
    name = "drift"
    library = LIBRARY

    def _columns(self, ctx: EvalContext, ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[list[str], dict[str, str], str]:
        """(columns to compare, {excluded column: reason}, where the list came from)."""
        spec = ctx.spec
        if spec.checks.drift.columns:
            cols, source = list(dict.fromkeys(spec.checks.drift.columns)), "checks.drift.columns"
        elif not spec.is_audit:
            cols, source = ctx.features, "model.features"
        else:
            cols, source = [], "all shared columns (audit)"
        if cols:
            ctx.require_columns(ref, cols, dataset="reference", field_name=source)
            ctx.require_columns(cur, cols, dataset="current", field_name=source)
            return cols, {}, source

        skip = {spec.data.label}
        if spec.predictions is not None:
            skip.add(spec.predictions.column)
            if spec.predictions.score_column:
                skip.add(spec.predictions.score_column)
        excluded: dict[str, str] = {c: "label or predictions column" for c in ref.columns if c in skip}
        pii = set(spec.governance.pii_columns)
        shared = [c for c in ref.columns if c in set(cur.columns) and c not in skip]
        excluded.update({c: "not in data.current" for c in ref.columns if c not in set(cur.columns) and c not in skip})
        for c in shared:
            reason = _exclusion_reason(c, ref[c], cur[c], pii)
            if reason:
                excluded[c] = reason
            else:
                cols.append(c)
        return cols, excluded, source

    def run(self, ctx: EvalContext) -> StageOutcome:
        spec = ctx.spec
        if spec.data.current is None:
            return not_applicable(self.name, "no current data given (data.current)", library=LIBRARY)
        os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's (UI-only) telemetry opt-out
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        ref, cur = ctx.frame("reference"), ctx.frame("current")
        ref_name = "reference" if spec.data.reference is not None else "train"
        columns, excluded, source = self._columns(ctx, ref, cur)
        if not columns:
            raise DataError(
                f"checks.drift.columns: no column left to compare between data.{ref_name} and data.current "
                f"(excluded: {excluded}); list the columns to compare under checks.drift.columns"
            )

        numerical = [c for c in columns if _is_numeric(ref[c]) and _is_numeric(cur[c])]
        categorical = [c for c in columns if c not in set(numerical)]
        ref_x, cur_x = ref[columns].copy(), cur[columns].copy()
        for c in categorical:  # one value type on both sides (e.g. 1 vs "1" after a stray text value)
            ref_x[c] = ref_x[c].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
            cur_x[c] = cur_x[c].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
        definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)

        d = spec.checks.drift
        preset = DataDriftPreset(columns=columns, drift_share=d.max_drifted_share, threshold=d.column_threshold)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = Report([preset], include_tests=True)
                snapshot = report.run(
                    reference_data=Dataset.from_pandas(ref_x, data_definition=definition),
                    current_data=Dataset.from_pandas(cur_x, data_definition=definition),
                )
                result = snapshot.dict()
        except Exception as exc:  # noqa: BLE001 - a library failure on user data becomes a field-named DataError
            raise DataError(
                f"checks.drift: Evidently could not compare data.{ref_name} and data.current on {columns}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

        count, share, share_test, per_column = self._parse(result)
        missing = [c for c in columns if c not in per_column]
        if count is None or share is None or missing:
            raise DataError(
                f"checks.drift: Evidently's report lacks the drift share or the column(s) {missing}; "
                "cannot judge drift"
            )

        checks: list[Check] = [
            Check.judged(
                "drifted_share", share, Threshold(max=d.max_drifted_share, required=d.required),
                message=f"{int(count)} of {len(columns)} column(s) drifted (share {share:.3g}, "
                        f"needs <= {d.max_drifted_share:g})",
                detail={"drifted_columns": int(count), "columns": len(columns),
                        "drifted": [c for c in columns if per_column[c]["drifted"]]},
            )
        ]
        for c in columns:
            info = per_column[c]
            verdict = {True: "drifted", False: "no drift", None: "verdict unknown"}[info["drifted"]]
            checks.append(Check.info(
                "column_drift", info["score"], subject=c,
                message=f"{c}: {info['method']} = {_fmt(info['score'])} "
                        f"(threshold {_fmt(info['threshold'])}): {verdict}",
                detail={"method": info["method"], "threshold": info["threshold"], "drifted": info["drifted"],
                        "column_type": "numerical" if c in numerical else "categorical"},
            ))
        summary = {
            "drifted_columns": int(count),
            "drifted_share": float(share),
            "columns_compared": len(columns),
            "column_source": source,
            "excluded_columns": excluded,
            "reference_dataset": ref_name,
            "rows": {ref_name: int(len(ref)), "current": int(len(cur))},
            "column_threshold": d.column_threshold,
            "max_drifted_share": d.max_drifted_share,
            # Evidently's own dataset-level test is strict (share < drift_share); the check above is inclusive.
            "evidently_share_test": share_test,
        }
        return outcome(self.name, checks, library=LIBRARY, summary=summary)

    @staticmethod
    def _parse(result: dict[str, Any]) -> tuple[float | None, float | None, str | None, dict[str, dict[str, Any]]]:
        """From the snapshot dict: drifted column count and share, and per column the drift score, test, threshold
        and verdict (the status of the per-column test Evidently attaches with ``include_tests=True``)."""
        status: dict[str, str] = {}
        for test in result.get("tests", []):
            metric_id = (test.get("metric_config") or {}).get("metric_id")
            raw = test.get("status", "")
            if metric_id:
                status[metric_id] = str(getattr(raw, "value", raw))  # a TestStatus str-enum in .dict()
        count = share = None
        share_test: str | None = None
        per_column: dict[str, dict[str, Any]] = {}
        for metric in result.get("metrics", []):
            config = metric.get("config") or {}
            kind = str(config.get("type", ""))
            value = metric.get("value")
            if kind.endswith(":DriftedColumnsCount") and isinstance(value, dict):
                count, share = _finite(value.get("count")), _finite(value.get("share"))
                share_test = status.get(metric.get("id", ""))
            elif kind.endswith(":ValueDrift") and config.get("column") is not None:
                st = status.get(metric.get("id", ""))
                per_column[str(config["column"])] = {
                    "score": _finite(value),
                    "method": str(config.get("method")),
                    "threshold": _finite(config.get("threshold")),
                    "drifted": {"FAIL": True, "SUCCESS": False}.get(st) if st else None,
                }
        return count, share, share_test, per_column


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


STAGE = DriftStage()
