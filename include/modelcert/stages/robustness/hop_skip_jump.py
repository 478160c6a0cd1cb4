"""HopSkipJump (black box) with seeded starting points and batched queries; see the package docstring's
workarounds 1-4 for why it is not ART's attack called as is."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from modelcert.context import EvalContext
from modelcert.stages.robustness.art_env import seeded_global_numpy
from modelcert.stages.robustness.oracle import LockstepOracle
from modelcert.stages.robustness.results import AttackResult
from modelcert.stages.robustness.space import Setup

#: Random starting candidates per row for HopSkipJump (ART's own default ``init_size``).
HSJ_INIT_SIZE = 100
#: Initial number of queries per gradient estimate (HopSkipJump grows it with sqrt(iteration) up to max_eval).
HSJ_INIT_EVAL = 10
#: The box's corners are added to the starting candidates when there are at most this many (k <= 8).
HSJ_MAX_CORNERS = 256
#: Points of the line search from a random adversarial start toward the row.
HSJ_LINE_POINTS = 32
#: Rows attacked concurrently by the lock-step oracle (bounds threads for large samples).
HSJ_WAVE = 128


def _f32(a: np.ndarray) -> np.ndarray:
    """Round to float32 precision (ART's working dtype), keep float64 arithmetic."""
    return np.asarray(a, dtype=np.float32).astype(float)


def run_hop_skip_jump(ctx: EvalContext, setup: Setup, clean_pred: np.ndarray, eps_list: list[float]) -> AttackResult:
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    rc = ctx.spec.checks.robustness
    space, X = setup.space, setup.X
    k = len(space.features)
    t0 = time.perf_counter()
    # ART works in float32 (ART_NUMPY_DTYPE): every point is rounded to float32 before it is judged, so that what
    # we verify is exactly what ART sees. A coordinate equal to the row's own (rounded) value maps back to the
    # row's exact original value, so the unperturbed point is the original row, not a rounding of it.
    raw0 = X[space.features].to_numpy(dtype=float)
    Z = _f32(space.normalize(X))
    correct = clean_pred == setup.y
    target_rows = np.flatnonzero(correct)
    model_calls = 0

    def to_raw(rows: np.ndarray, Zq: np.ndarray) -> np.ndarray:
        Zq = np.asarray(Zq, dtype=float)
        return np.where(Zq == Z[rows], raw0[rows], space.denormalize(Zq))

    def labels_for(rows: np.ndarray, Zq: np.ndarray) -> np.ndarray:
        nonlocal model_calls
        model_calls += 1
        return setup.predict(ctx, space.rebuild(X.iloc[rows], to_raw(rows, Zq)))

    # Workaround 1 (see module docstring): ART 1.20.1 HopSkipJump._init_sample draws the initial adversarial point
    # from an unseeded np.random.RandomState(); we draw seeded candidates ourselves, batched over all rows, and pass
    # the closest one after a line search toward the row as x_adv_init.
    rng = np.random.default_rng([rc.seed, 1])
    init = np.full((len(X), k), np.nan)
    if target_rows.size:
        m = len(target_rows)
        z0 = Z[target_rows]  # (m, k)
        lows = np.repeat(z0[:, None, :], k, axis=1)
        highs = lows.copy()
        lows[:, np.arange(k), np.arange(k)] = 0.0  # one allowed feature at a time to its range's ends
        highs[:, np.arange(k), np.arange(k)] = 1.0
        rand = rng.uniform(0.0, 1.0, size=(m, HSJ_INIT_SIZE, k))
        parts = [rand, lows, highs]
        if 2**k <= HSJ_MAX_CORNERS:  # every corner of the box: where a monotone model's extremes are
            corners = np.array(list(itertools.product((0.0, 1.0), repeat=k)))
            parts.append(np.broadcast_to(corners, (m, *corners.shape)))
        cand = _f32(np.concatenate(parts, axis=1))  # (m, C, k)
        c = cand.shape[1]
        cand_rows = np.repeat(target_rows, c)
        flipped = (labels_for(cand_rows, cand.reshape(-1, k)) != clean_pred[cand_rows]).reshape(m, c)
        dist = np.where(flipped, np.abs(cand - z0[:, None, :]).max(axis=2), np.inf)
        best = dist.argmin(axis=1)
        found = np.isfinite(dist[np.arange(m), best])
        init[target_rows[found]] = cand[np.arange(m), best][found]
        has_init = target_rows[found]
        if has_init.size:
            ts = np.linspace(1.0 / HSJ_LINE_POINTS, 1.0, HSJ_LINE_POINTS)
            line = _f32(Z[has_init, None, :] + ts[None, :, None] * (init[has_init, None, :] - Z[has_init, None, :]))
            line_rows = np.repeat(has_init, HSJ_LINE_POINTS)
            ok = (labels_for(line_rows, line.reshape(-1, k)) != clean_pred[line_rows]).reshape(len(has_init), -1)
            ok[:, -1] = True  # t = 1 is the verified candidate
            first = ok.argmax(axis=1)
            init[has_init] = line[np.arange(len(has_init)), first]
    attack_rows = target_rows[~np.isnan(init[target_rows, 0])] if target_rows.size else target_rows

    def onehot(rows: np.ndarray, Zq: np.ndarray) -> np.ndarray:
        lab = labels_for(rows, Zq)
        return np.stack([1 - lab, lab], axis=1).astype(np.float32)

    def job_for(r: int) -> Callable[[Callable[[np.ndarray], np.ndarray]], np.ndarray]:
        # Workaround 3: one BlackBoxClassifier per row; its predict closure carries the row (non-allowed features).
        def job(predict: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
            clf = BlackBoxClassifier(predict_fn=predict, input_shape=(k,), nb_classes=2, clip_values=(0.0, 1.0))
            hsj = HopSkipJump(clf, targeted=False, norm=np.inf, max_iter=rc.hop_skip_jump_max_iter,
                              max_eval=rc.hop_skip_jump_max_eval,
                              init_eval=min(HSJ_INIT_EVAL, rc.hop_skip_jump_max_eval),
                              init_size=HSJ_INIT_SIZE, batch_size=max(rc.hop_skip_jump_max_eval, 64), verbose=False)
            x = Z[r][None].astype(np.float32)
            return hsj.generate(x=x, x_adv_init=init[r][None].astype(np.float32))[0]

        return job

    # Workaround 2: lock-step threads, one batched model call per round (see LockstepOracle).
    oracle = LockstepOracle(onehot)
    adv = Z.copy()
    with seeded_global_numpy(rc.seed):
        for start in range(0, len(attack_rows), HSJ_WAVE):
            wave = attack_rows[start:start + HSJ_WAVE]
            results = oracle.run({int(r): job_for(int(r)) for r in wave})
            for r, x_adv in results.items():
                adv[r] = np.clip(np.asarray(x_adv, dtype=float), 0.0, 1.0)

    # Re-check every adversarial example with the real model on rebuilt input rows; keep the closer of HSJ's
    # result and its (verified) starting point.
    distance = np.full(len(X), np.inf)
    if attack_rows.size:
        both = np.concatenate([adv[attack_rows], init[attack_rows]])
        both_rows = np.concatenate([attack_rows, attack_rows])
        flips = (labels_for(both_rows, both) != clean_pred[both_rows]).reshape(2, -1)
        # Distances of the rebuilt input rows themselves (normalized), so the verdicts hold for the rows we report.
        d = (np.abs(to_raw(both_rows, both) - raw0[both_rows]) / space.span).max(axis=1).reshape(2, -1)
        d[~flips] = np.inf
        pick = d.argmin(axis=0)
        distance[attack_rows] = d[pick, np.arange(len(attack_rows))]
        chosen = np.where(pick[:, None] == 0, adv[attack_rows], init[attack_rows])
        adv[attack_rows] = np.where(np.isfinite(distance[attack_rows])[:, None], chosen, Z[attack_rows])
    robust: dict[float, np.ndarray] = {}
    adversarial: dict[float, pd.DataFrame] = {}
    for eps in eps_list:
        within = distance <= eps
        robust[eps] = correct & ~within
        Zeps = np.where(within[:, None], adv, Z)
        adversarial[eps] = space.rebuild(X, to_raw(np.arange(len(X)), Zeps))
    finite = distance[np.isfinite(distance)]
    detail = {
        "rows_attacked": int(attack_rows.size),
        "rows_without_adversarial_start": int(target_rows.size - attack_rows.size),
        "median_min_perturbation": float(np.median(finite)) if finite.size else None,
        "model_calls": int(model_calls),
        "attack_queries": int(oracle.queries),
        "rows_evaluated": int(oracle.rows_evaluated),
        "max_iter": rc.hop_skip_jump_max_iter,
        "max_eval": rc.hop_skip_jump_max_eval,
        "init_eval": min(HSJ_INIT_EVAL, rc.hop_skip_jump_max_eval),
    }
    return AttackResult(attack="hop_skip_jump", eps=list(eps_list), correct=correct, robust=robust,
                        adversarial=adversarial, runtime_s=time.perf_counter() - t0, detail=detail, distance=distance)
