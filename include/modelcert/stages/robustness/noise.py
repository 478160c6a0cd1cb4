"""Natural perturbation: seeded Gaussian noise on the allowed features, judged by the prediction flip rate."""

from __future__ import annotations

import numpy as np

from modelcert.context import EvalContext
from modelcert.stages.robustness.results import NoiseResult
from modelcert.stages.robustness.space import Setup

#: Noisy copies per sampled row and sigma.
NOISE_REPEATS = 10


def run_noise(ctx: EvalContext, setup: Setup, clean_pred: np.ndarray, sigma: float, index: int) -> NoiseResult:
    rc = ctx.spec.checks.robustness
    space, X = setup.space, setup.X
    rng = np.random.default_rng([rc.seed, 2, index])
    base = X.iloc[np.tile(np.arange(len(X)), NOISE_REPEATS)].reset_index(drop=True)
    raw = base[space.features].to_numpy(dtype=float)
    raw = np.clip(raw + rng.normal(0.0, 1.0, size=raw.shape) * (sigma * space.std), space.lo, space.hi)
    pred = setup.predict(ctx, space.rebuild(base, raw))
    ref = np.tile(clean_pred, NOISE_REPEATS)
    y = np.tile(setup.y, NOISE_REPEATS)
    return NoiseResult(sigma=sigma, flip_rate=float((pred != ref).mean()), accuracy=float((pred == y).mean()),
                       repeats=NOISE_REPEATS)
