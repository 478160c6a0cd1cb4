"""Data drift with Evidently 0.7 (its per-column statistical tests, as ``DataDriftPreset`` picks them): reference
data (``data.reference``, else the training data) against production-like data (``data.current``).

Columns compared: ``checks.drift.columns`` when given, else the model's features, else (a third-party audit without
a model) every column both datasets share except the label and the predictions columns, leaving out what is not a
distribution to compare: personal data listed in ``governance.pii_columns``, identifiers (a distinct value per row or
an id-like name), dates and free text. The excluded columns and why are part of the summary.

Each column's statistic is computed once, with Evidently's own test registry (``get_stattest``: the test
``DataDriftPreset`` would pick for the column's type and size, with the same data cleaning), and no report or chart
is built: the preset computed every column three times and rendered Plotly figures nobody reads. Categorical values
are converted to text once per distinct value. Above ``checks.drift.sample_above`` rows (default 200,000), both
datasets are cut to a seeded sample of that size, stratified by the label where present; the sample sizes and the
bound on the sampling error (DKW, 95 %) are in the summary.

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

import numpy as np
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
        from evidently.legacy.calculations.stattests.registry import get_stattest
        from evidently.legacy.core import ColumnType

        ref, cur = ctx.frame("reference"), ctx.frame("current")
        ref_name = "reference" if spec.data.reference is not None else "train"
        columns, excluded, source = self._columns(ctx, ref, cur)
        if not columns:
            raise DataError(
                f"checks.drift.columns: no column left to compare between data.{ref_name} and data.current "
                f"(excluded: {excluded}); list the columns to compare under checks.drift.columns"
            )

        d = spec.checks.drift
        sampling: dict[str, Any] | None = None
        rows = {ref_name: int(len(ref)), "current": int(len(cur))}
        if d.sample_above is not None and max(len(ref), len(cur)) > d.sample_above:
            ref, cur, sampling = _sample_pair(ref, cur, ref_name, n=d.sample_above, seed=spec.statistics.seed,
                                              stratify=spec.data.label)
        numerical = [c for c in columns if _is_numeric(ref[c]) and _is_numeric(cur[c])]
        per_column: dict[str, dict[str, Any]] = {}
        for c in columns:
            kind = ColumnType.Numerical if c in set(numerical) else ColumnType.Categorical
            r, k = ref[c], cur[c]
            if kind == ColumnType.Categorical:  # one value type on both sides (e.g. 1 vs "1" after a stray text)
                r, k = as_text(r), as_text(k)
            per_column[c] = _column_drift(c, r, k, kind, d.column_threshold, get_stattest, ref_name)

        count = sum(1 for c in columns if per_column[c]["drifted"])
        share = count / len(columns)
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
            "rows": rows,
            "column_threshold": d.column_threshold,
            "max_drifted_share": d.max_drifted_share,
            # What Evidently's DataDriftPreset tests at dataset level (share < drift_share, strict); the check
            # above is inclusive.
            "evidently_share_test": "SUCCESS" if share < d.max_drifted_share else "FAIL",
            "method": "Evidently's per-column statistical tests (default choice per column), one pass per column",
        }
        if sampling is not None:
            summary["sampling"] = sampling
        return outcome(self.name, checks, library=LIBRARY, summary=summary)


def as_text(s: pd.Series) -> pd.Series:
    """``str(value)`` for every non-null value, null kept, as object: computed once per distinct value (a
    ``Series.map`` over every row cost millions of Python calls at a million rows)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    if len({type(u) for u in uniques}) > 1:
        # Mixed types (1 and "1", True and 1): factorize merges values that compare equal (True == 1), which
        # str() tells apart, so each row is converted by itself (in C), nulls kept as they were.
        text = s.astype(str).astype(object)
        return text.where(s.notna(), s).astype(object)
    table = np.array([str(u) for u in uniques] + [np.nan], dtype=object)
    return pd.Series(table[codes], index=s.index, name=s.name, dtype=object)


def _column_drift(column: str, ref: pd.Series, cur: pd.Series, kind: Any, threshold: float | None,
                  get_stattest: Any, ref_name: str) -> dict[str, Any]:
    """One column's drift, as Evidently's ``ValueDrift`` computes it (its ``get_one_column_drift``: infinities and
    nulls dropped, the default test for the column type and size, its default threshold unless one is given),
    without the histograms and charts that come with it."""
    r = ref.replace([-np.inf, np.inf], np.nan).dropna() if _is_numeric(ref) else ref.dropna()
    k = cur.replace([-np.inf, np.inf], np.nan).dropna() if _is_numeric(cur) else cur.dropna()
    if r.empty or k.empty:
        which = f"data.{ref_name}" if r.empty else "data.current"
        raise DataError(f"checks.drift: column {column!r} has no non-null value in {which}; cannot compare it "
                        "(leave it out with checks.drift.columns)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = get_stattest(r, k, kind, None)
            result = test(r, k, kind, threshold)
    except Exception as exc:  # noqa: BLE001 - a library failure on user data becomes a field-named DataError
        raise DataError(f"checks.drift: Evidently could not compare column {column!r} of data.{ref_name} and "
                        f"data.current: {type(exc).__name__}: {exc}") from exc
    return {"score": _finite(result.drift_score), "method": str(test.display_name),
            "threshold": _finite(result.actual_threshold), "drifted": bool(result.drifted)}


def _sample_rows(df: pd.DataFrame, n: int, seed: int, stratify: str | None) -> tuple[np.ndarray, str | None]:
    """Positions of a seeded sample of ``n`` rows of ``df`` (all rows when it has no more), stratified by
    ``stratify`` when that column exists and has no null (proportional allocation, largest remainders)."""
    if len(df) <= n:
        return np.arange(len(df)), None
    rng = np.random.default_rng(seed)
    if stratify is None or stratify not in df.columns or df[stratify].isna().any():
        return np.sort(rng.choice(len(df), size=n, replace=False)), None
    codes, _ = pd.factorize(df[stratify])
    sizes = np.bincount(codes)
    quota = sizes * n / len(df)
    take = np.floor(quota).astype(np.int64)
    take[np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]] += 1
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    parts = [order[s + rng.choice(size, size=t, replace=False)] for s, size, t in zip(starts, sizes, take, strict=True)]
    return np.sort(np.concatenate(parts)), stratify


def _sample_pair(ref: pd.DataFrame, cur: pd.DataFrame, ref_name: str, *, n: int, seed: int,
                 stratify: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Both datasets cut to at most ``n`` rows each (seeded, stratified by the label where present), and what
    that costs: the Dvoretzky-Kiefer-Wolfowitz bound on how far any column's sampled distribution (its CDF, or
    a category's share) can be from the full data's, at 95 %, with the finite-population correction."""
    out: dict[str, Any] = {"sample_above": n, "seed": seed, "rows": {}, "sample_rows": {}, "stratified_by": {},
                           "max_distribution_error_95": {}}
    frames = []
    for name, df in ((ref_name, ref), ("current", cur)):
        pos, by = _sample_rows(df, n, seed, stratify)
        m, total = len(pos), len(df)
        eps = math.sqrt(math.log(2 / 0.05) / (2 * m)) * (math.sqrt((total - m) / (total - 1)) if total > 1 else 0.0)
        out["rows"][name], out["sample_rows"][name] = total, m
        out["stratified_by"][name] = by
        out["max_distribution_error_95"][name] = round(eps, 6)
        frames.append(df.iloc[pos] if m < total else df)
    out["method"] = ("seeded sample without replacement, proportional to the label's classes; error bound: DKW "
                     "inequality sqrt(ln(2/0.05) / 2n) x sqrt((N - n) / (N - 1))")
    return frames[0], frames[1], out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


STAGE = DriftStage()
