"""FGSM and PGD (white box) in a pipeline's transformed space, only where the preprocessing maps each allowed
feature affinely onto one column; otherwise the reason they do not apply (package docstring, workaround 5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelcert.context import EvalContext
from modelcert.stages.robustness.results import AttackResult
from modelcert.stages.robustness.space import NotApplicable, Setup

#: PGD iterations (step = eps / 4).
PGD_MAX_ITER = 20
GRADIENT_ATTACKS = ("fgsm", "pgd")


@dataclass
class GradientSpace:
    estimator: Any  # final sklearn estimator
    transform: Callable[[pd.DataFrame], np.ndarray]
    columns: list[int]  # transformed column per allowed feature
    slope: np.ndarray  # x_t = slope * x + intercept, per allowed feature
    intercept: np.ndarray
    names: list[str]


def _dense(a: Any) -> np.ndarray:
    if hasattr(a, "toarray"):
        a = a.toarray()
    return np.asarray(a, dtype=float)


def gradient_space(ctx: EvalContext, setup: Setup) -> GradientSpace:
    """The space where ART can take gradients, or NotApplicable with the reason."""
    from art.estimators.classification import SklearnClassifier
    from art.estimators.estimator import LossGradientsMixin
    from sklearn.pipeline import Pipeline

    model = ctx.model
    if getattr(model, "isolated", False):  # a proxy for the sandboxed pickle model (modelcert.sandbox)
        raise NotApplicable("model runs isolated (pickle artifact): no gradients across the process boundary")
    if isinstance(model, Pipeline):
        final = model.steps[-1][1]
        pre = model[:-1] if len(model.steps) > 1 else None
    else:
        final, pre = model, None
    kind = type(final).__name__
    if type(final).__module__.split(".")[0] != "sklearn":
        raise NotApplicable(f"{kind} is not a scikit-learn estimator; ART's gradient wrappers do not cover it")
    wrapped = SklearnClassifier(final)
    if not isinstance(wrapped, LossGradientsMixin):
        raise NotApplicable(f"{kind} exposes no gradients to ART")

    X, space = setup.X, setup.space
    if pre is not None:
        def transform(df: pd.DataFrame) -> np.ndarray:
            return _dense(pre.transform(df))
        try:
            names = [str(n) for n in pre.get_feature_names_out()]
        except Exception:  # noqa: BLE001 - names are a convenience; the mapping is verified below anyway
            names = []
    else:
        def transform(df: pd.DataFrame) -> np.ndarray:
            return df.to_numpy(dtype=float)
        names = list(X.columns)
        if any(not pd.api.types.is_numeric_dtype(X[c]) for c in X.columns):
            raise NotApplicable(f"{kind} takes non-numeric columns directly; there is no numeric space to attack")

    # Verify on a few sampled rows that each allowed feature moves exactly one transformed column, affinely.
    k = len(space.features)
    base = X.iloc[: min(3, len(X))]
    levels = np.stack([space.lo, (space.lo + space.hi) / 2, space.hi])  # (3, k)
    probe = []
    for i in range(len(base)):
        for j in range(k):
            for v in levels[:, j]:
                raw = base[space.features].to_numpy(dtype=float)[i:i + 1].copy()
                raw[0, j] = v
                probe.append(space.rebuild(base.iloc[i:i + 1], raw))
    t_base = transform(base)
    t_probe = transform(pd.concat(probe, ignore_index=True)).reshape(len(base), k, 3, -1)
    columns, slope, intercept = [], np.zeros(k), np.zeros(k)
    for j, f in enumerate(space.features):
        named = [c for c, n in enumerate(names) if n == f or n.endswith("__" + f)]
        changed = set()
        for i in range(len(base)):
            diff = ~np.isclose(t_probe[i, j], t_base[i][None, :], rtol=1e-9, atol=1e-12)
            changed |= set(np.flatnonzero(diff.any(axis=0)).tolist())
        if len(changed) != 1 or (named and named != sorted(changed)):
            raise NotApplicable(
                f"the preprocessing of {type(model).__name__} does not map feature {f!r} onto one transformed column "
                f"(it moves columns {sorted(names[c] if c < len(names) else c for c in changed)}), so a gradient "
                "step there would not correspond to a valid input row"
            )
        c = changed.pop()
        t_lo, t_mid, t_hi = t_probe[:, j, 0, c], t_probe[:, j, 1, c], t_probe[:, j, 2, c]
        a = (t_hi - t_lo) / (space.hi[j] - space.lo[j])
        b = t_lo - a * space.lo[j]
        affine = np.allclose(a, a[0]) and np.allclose(b, b[0]) and np.allclose(t_mid, a * levels[1, j] + b)
        if not affine or a[0] == 0:
            raise NotApplicable(
                f"the preprocessing of {type(model).__name__} maps feature {f!r} non-affinely (or row-dependently) "
                "onto "
                f"its transformed column, so an eps budget there does not correspond to the feature's range"
            )
        columns.append(c)
        slope[j], intercept[j] = a[0], b[0]
    return GradientSpace(estimator=final, transform=transform, columns=columns, slope=slope, intercept=intercept,
                          names=names)


def run_gradient_attack(ctx: EvalContext, setup: Setup, gs: GradientSpace, attack: str, clean_pred: np.ndarray,
                     eps_list: list[float]) -> AttackResult:
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import SklearnClassifier

    t0 = time.perf_counter()
    space, X = setup.space, setup.X
    x_t = gs.transform(X)
    d = x_t.shape[1]
    cols = np.asarray(gs.columns)
    t_lo = np.minimum(gs.slope * space.lo, gs.slope * space.hi) + gs.intercept
    t_hi = np.maximum(gs.slope * space.lo, gs.slope * space.hi) + gs.intercept
    # clip_values: the allowed columns are bounded by their transformed training range; the other columns never
    # move (mask = 0), their bounds only need to contain the sampled values so that ART's clipping leaves them be.
    cmin, cmax = x_t.min(axis=0) - 1.0, x_t.max(axis=0) + 1.0
    cmin[cols], cmax[cols] = np.minimum(t_lo, x_t[:, cols].min(axis=0)), np.maximum(t_hi, x_t[:, cols].max(axis=0))
    mask = np.zeros(d, dtype=np.float32)
    mask[cols] = 1.0
    classifier = SklearnClassifier(gs.estimator, clip_values=(cmin.astype(np.float32), cmax.astype(np.float32)))
    pos = ctx.positive_index()
    y_idx = np.where(setup.y == 1, pos, 1 - pos)
    y_onehot = np.eye(2, dtype=np.float32)[y_idx]
    correct = clean_pred == setup.y
    robust, adversarial, max_moves = {}, {}, {}
    for eps in eps_list:
        # FGSM/PGD accept an eps array broadcast per column: eps x the column's transformed training range.
        eps_t = np.zeros(d)
        eps_t[cols] = eps * (t_hi - t_lo)
        if attack == "fgsm":
            step = np.where(eps_t > 0, eps_t, 1e-12)  # unused by FGSM (it steps by eps) but must be positive
            art_attack = FastGradientMethod(classifier, norm=np.inf, eps=eps_t, eps_step=step, targeted=False,
                                            num_random_init=0, batch_size=256)
        else:
            step = np.where(eps_t > 0, eps_t / 4.0, 1e-12)
            art_attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps_t, eps_step=step,
                                                  max_iter=PGD_MAX_ITER, targeted=False, num_random_init=0,
                                                  batch_size=256, verbose=False)
        x_adv = art_attack.generate(x=x_t.astype(np.float32), y=y_onehot, mask=mask)
        # Back to input rows (only the allowed features move), re-predicted by the full model.
        raw = (np.asarray(x_adv, dtype=float)[:, cols] - gs.intercept) / gs.slope
        # float32 rounding in ART may overshoot the budget by ~1e-7 of the range: project back exactly.
        raw0 = X[space.features].to_numpy(dtype=float)
        raw = np.clip(raw, np.maximum(space.lo, raw0 - eps * space.span), np.minimum(space.hi, raw0 + eps * space.span))
        raw = np.where(np.isclose(raw, raw0, rtol=0, atol=1e-9 * space.span), raw0, raw)
        frame = space.rebuild(X, raw)
        pred = setup.predict(ctx, frame)
        robust[eps] = correct & (pred == setup.y)
        adversarial[eps] = frame
        moved = np.abs(space.normalize(frame) - space.normalize(X))
        max_moves[eps] = float(moved.max()) if moved.size else 0.0
    detail = {"estimator": type(gs.estimator).__name__,
              "perturbed_columns": [gs.names[c] if c < len(gs.names) else str(c) for c in gs.columns],
              "max_normalized_perturbation": {f"{e:g}": v for e, v in max_moves.items()}}
    if attack == "pgd":
        detail["max_iter"] = PGD_MAX_ITER
    return AttackResult(attack=attack, eps=list(eps_list), correct=correct, robust=robust, adversarial=adversarial,
                        runtime_s=time.perf_counter() - t0, detail=detail)
