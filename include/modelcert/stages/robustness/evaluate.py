"""One sample, every configured attack and the noise test, and the summary stored with the stage result."""

from __future__ import annotations

import math
import time
from typing import Any

from modelcert.context import EvalContext
from modelcert.stages.robustness.art_env import quiet_art, single_threaded_native
from modelcert.stages.robustness.gradient import GRADIENT_ATTACKS, GradientSpace, gradient_space, run_gradient_attack
from modelcert.stages.robustness.hop_skip_jump import run_hop_skip_jump
from modelcert.stages.robustness.noise import NOISE_REPEATS, run_noise
from modelcert.stages.robustness.results import AttackResult, RobustnessReport
from modelcert.stages.robustness.space import NotApplicable, prepare


def evaluate(ctx: EvalContext) -> RobustnessReport:
    """Run every configured attack and the noise test; raises NotApplicable when the stage does not apply."""
    rc = ctx.spec.checks.robustness
    t_start = time.perf_counter()
    setup = prepare(ctx)
    clean_pred = setup.predict(ctx, setup.X)
    eps_list = sorted(set(float(e) for e in rc.eps))
    attacks: dict[str, AttackResult] = {}
    na: dict[str, str] = {}
    runtime: dict[str, float] = {}
    with quiet_art(), single_threaded_native():
        if "hop_skip_jump" in rc.attacks:
            attacks["hop_skip_jump"] = run_hop_skip_jump(ctx, setup, clean_pred, eps_list)
            runtime["hop_skip_jump"] = attacks["hop_skip_jump"].runtime_s
        grads = [a for a in GRADIENT_ATTACKS if a in rc.attacks]
        if grads:
            t0 = time.perf_counter()
            try:
                gs: GradientSpace | None = gradient_space(ctx, setup)
            except NotApplicable as exc:
                gs = None
                for a in grads:
                    na[a] = str(exc)
            for a in grads:
                if gs is not None:
                    attacks[a] = run_gradient_attack(ctx, setup, gs, a, clean_pred, eps_list)
                    runtime[a] = attacks[a].runtime_s
                else:
                    runtime[a] = time.perf_counter() - t0
        t0 = time.perf_counter()
        noise = [run_noise(ctx, setup, clean_pred, float(s), i) for i, s in enumerate(rc.noise_sigma)]
        runtime["noise"] = time.perf_counter() - t0
    runtime["total"] = time.perf_counter() - t_start
    runtime = {k: round(float(v), 3) for k, v in runtime.items()}
    space = setup.space
    frozen_unknown = sorted(set(rc.frozen_features) - set(ctx.features))
    summary: dict[str, Any] = {
        "sample_size": int(len(setup.X)),
        "sample_candidates": int(setup.candidates),
        # Every rate above (robust accuracy, flip rate) is a share of the sampled rows: at most this far from the
        # share over all candidate rows at 95 % (normal approximation, worst case p = 0.5, finite population).
        "sampling_error_95": _margin(len(setup.X), int(setup.candidates)),
        "seed": rc.seed,
        "allowed_features": list(space.features),
        "excluded_features": dict(setup.excluded),
        "valid_ranges": {f: [float(space.lo[j]), float(space.hi[j])] for j, f in enumerate(space.features)},
        "range_source": "train" if ctx.spec.data.train is not None else "test",
        "eps": eps_list,
        "attacks_run": list(attacks),
        "attacks_not_applicable": dict(na),
        "runtime_s": runtime,
        "noise_repeats": NOISE_REPEATS,
    }
    if setup.widened:
        summary["ranges_widened_to_sample"] = list(setup.widened)
    if frozen_unknown:
        summary["frozen_features_not_in_model"] = frozen_unknown
    return RobustnessReport(sample=setup.X, labels=setup.y, clean_pred=clean_pred, space=space, attacks=attacks,
                            not_applicable=na, noise=noise, runtime_s=runtime, summary=summary)


def _margin(n: int, population: int) -> float:
    """Worst-case 95 % margin of a share estimated from ``n`` of ``population`` rows drawn without replacement."""
    if n <= 0 or population <= 1:
        return 0.0
    fpc = max(0.0, (population - n) / (population - 1))
    return round(1.96 * math.sqrt(0.25 / n * fpc), 6)
