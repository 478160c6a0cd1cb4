"""Which columns the explainability stage looks at, and how a column becomes small integer codes (categories,
or quantile bins for a numeric column) for slices and association measures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelcert.context import EvalContext

#: Most categories of one column kept as their own code; the rarer ones share the code "other".
MAX_LEVELS = 30
#: A text column with more distinct values than this share of its rows is an identifier (a name, a date), not a
#: feature worth slicing or probing.
IDENTIFIER_SHARE = 0.5
MISSING = "\x00missing"


def candidate_features(ctx: EvalContext) -> tuple[list[str], str]:
    """The columns whose relation to the protected attributes and to the errors is examined, and where they
    come from. With a model: its own input features. In a predictions-only audit the model's inputs are unknown,
    so every data column except the label, the predictions, PII and the protected attributes is a candidate."""
    if not ctx.spec.is_audit:
        return list(ctx.features), "model.features"
    spec = ctx.spec
    skip = {spec.data.label, *spec.data.protected_attributes, *spec.governance.pii_columns}
    if spec.predictions is not None:
        skip |= {spec.predictions.column, spec.predictions.score_column}
    cols = [str(c) for c in ctx.frame("test").columns if str(c) not in skip]
    return cols, "the test data's columns (predictions-only audit: the model's inputs are unknown)"


@dataclass(frozen=True)
class Coded:
    """One column as codes 0..k-1 with a readable label per code."""

    name: str
    codes: np.ndarray
    labels: tuple[str, ...]
    numeric: bool

    @property
    def k(self) -> int:
        return len(self.labels)


def code_column(col: pd.Series, *, bins: int) -> Coded | None:
    """Codes for a column: quantile bins for a numeric column with more than ``bins`` distinct values, else its
    values (the ``MAX_LEVELS`` most frequent, the rest as "other"); missing values are a code of their own.
    None for an identifier-like text column."""
    name = str(col.name)
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    if numeric and col.nunique(dropna=True) > bins:
        cut = pd.qcut(col.astype(float), q=bins, duplicates="drop")
        cats = cut.cat.categories
        codes = cut.cat.codes.to_numpy().astype(np.int64)
        labels = [f"{name} in [{iv.left:.4g}, {iv.right:.4g}]" for iv in cats]
        if (codes < 0).any():
            codes = np.where(codes < 0, len(labels), codes)
            labels.append(f"{name} missing")
        return Coded(name, codes, tuple(labels), True)
    counts, codes_of = _text_counts(col)
    if not numeric and len(col) >= 20 and len(counts) > IDENTIFIER_SHARE * len(col):
        return None
    keep = list(counts.index[:MAX_LEVELS])
    index = {v: i for i, v in enumerate(keep)}
    other = len(keep)
    codes = codes_of(index, other)
    labels = [f"{name} missing" if v == MISSING else f"{name}={v}" for v in keep]
    if (codes == other).any():
        labels.append(f"{name}=other")
    return Coded(name, codes, tuple(labels), False)


def _text_counts(col: pd.Series) -> tuple[pd.Series, Any]:
    """``col`` as text (missing values as :data:`MISSING`): its ``value_counts()`` and a function giving each row's
    code from a text -> code mapping. The same result as converting every row with ``astype(str)``, counted per
    distinct value instead (a million-row column has a handful): the distinct values in order of first
    appearance, as pandas' own counting keeps them, then sorted by count the way ``value_counts`` sorts."""
    row_codes, uniques = pd.factorize(col, use_na_sentinel=False)
    texts = [MISSING if _is_missing(u) else str(u) for u in uniques]
    per_unique = np.bincount(row_codes, minlength=len(uniques))
    totals: dict[str, int] = {}
    for text, n in zip(texts, per_unique, strict=True):  # values equal as text (1 and "1") count together
        totals[text] = totals.get(text, 0) + int(n)
    counts = pd.Series(list(totals.values()), index=pd.Index(list(totals), dtype=object),
                       dtype=np.int64).sort_values(ascending=False)

    def codes_of(index: dict[str, int], other: int) -> np.ndarray:
        lookup = np.array([index.get(t, other) for t in texts], dtype=np.int64)
        return lookup[row_codes]

    return counts, codes_of


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def seeded_rows(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``size`` rows out of ``n`` (all rows when ``n <= size``)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
