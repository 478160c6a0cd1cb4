"""What an attack may change: the allowed features, their valid ranges and the seeded sample of test rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from modelcert.context import EvalContext


class NotApplicable(Exception):
    """Raised during preparation when the stage does not apply; the message is the reason."""


@dataclass
class PerturbationSpace:
    """The allowed features and their valid ranges; maps rows to and from the normalized [0, 1] space."""

    features: list[str]
    lo: np.ndarray
    hi: np.ndarray
    std: np.ndarray

    @property
    def span(self) -> np.ndarray:
        return self.hi - self.lo

    def normalize(self, X: pd.DataFrame) -> np.ndarray:
        return (X[self.features].to_numpy(dtype=float) - self.lo) / self.span

    def denormalize(self, Z: np.ndarray) -> np.ndarray:
        return np.clip(self.lo + np.asarray(Z, dtype=float) * self.span, self.lo, self.hi)

    def rebuild(self, base: pd.DataFrame, raw: np.ndarray) -> pd.DataFrame:
        """``base`` rows with the allowed features replaced by ``raw`` (same number of rows); every other column
        keeps the base row's value."""
        pos = {f: j for j, f in enumerate(self.features)}
        cols = {c: (raw[:, pos[c]] if c in pos else base[c].to_numpy()) for c in base.columns}
        return pd.DataFrame(cols, columns=list(base.columns))


@dataclass
class Setup:
    X: pd.DataFrame  # sampled feature rows, index 0..n-1, allowed features as float
    y: np.ndarray  # true labels 0/1 (1 = positive class)
    rows: np.ndarray  # positions of the sampled rows in the test data
    candidates: int  # test rows eligible for sampling
    space: PerturbationSpace
    excluded: dict[str, str]  # model feature -> why it is not perturbed
    widened: list[str]  # allowed features whose valid range was widened to include sampled test values

    def predict(self, ctx: EvalContext, X: pd.DataFrame) -> np.ndarray:
        return (ctx.score_features(X) >= 0.5).astype(np.int64)


def prepare(ctx: EvalContext) -> Setup:
    rc = ctx.spec.checks.robustness
    features = ctx.features
    test = ctx.feature_frame("test")
    ref_name = "train" if ctx.spec.data.train is not None else "test"
    ref = ctx.feature_frame(ref_name)
    protected = set(ctx.spec.data.protected_attributes)
    frozen = set(rc.frozen_features)
    allowed: list[str] = []
    excluded: dict[str, str] = {}
    for f in features:
        col = test[f]
        if f in protected:
            excluded[f] = "protected attribute"
        elif f in frozen:
            excluded[f] = "frozen (checks.robustness.frozen_features)"
        elif pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            excluded[f] = "not numeric"
        elif not pd.api.types.is_numeric_dtype(ref[f]):
            excluded[f] = f"not numeric in data.{ref_name}"
        else:
            values = ref[f].to_numpy(dtype=float)
            if np.isnan(values).all():
                excluded[f] = f"no values in data.{ref_name}"
            elif np.nanmin(values) == np.nanmax(values):
                excluded[f] = f"constant in data.{ref_name} (a valid range of one point)"
            else:
                allowed.append(f)
    if not allowed:
        why = "; ".join(f"{f}: {r}" for f, r in excluded.items())
        raise NotApplicable(
            "no feature may be perturbed: robustness attacks need at least one numeric model feature that is neither "
            f"a protected attribute nor frozen ({why})"
        )

    labels = ctx.labels("test")
    eligible = np.flatnonzero(~test[allowed].isna().any(axis=1).to_numpy())
    if eligible.size == 0:
        raise NotApplicable(f"every test row has a null value in the perturbable features {allowed}")
    rng = np.random.default_rng(rc.seed)
    n = min(rc.sample_size, eligible.size)
    rows = np.sort(rng.choice(eligible, size=n, replace=False))
    X = test.iloc[rows].reset_index(drop=True).copy()
    X[allowed] = X[allowed].astype(float)

    ref_values = ref[allowed].to_numpy(dtype=float)
    lo, hi = np.nanmin(ref_values, axis=0), np.nanmax(ref_values, axis=0)
    std = np.nanstd(ref_values, axis=0, ddof=1) if len(ref_values) > 1 else np.zeros(len(allowed))
    sample = X[allowed].to_numpy(dtype=float)
    widened = [f for j, f in enumerate(allowed) if sample[:, j].min() < lo[j] or sample[:, j].max() > hi[j]]
    lo, hi = np.minimum(lo, sample.min(axis=0)), np.maximum(hi, sample.max(axis=0))
    space = PerturbationSpace(features=allowed, lo=lo, hi=hi, std=np.nan_to_num(std))
    return Setup(X=X, y=labels[rows], rows=rows, candidates=int(eligible.size), space=space, excluded=excluded,
                  widened=widened)
