"""Benchmark: the fairness stage's confidence intervals vs a Fairlearn MetricFrame bootstrap, side by side in one run,
on Adult (48,842 rows = the demo's train + test) with sex, race and sex × race; then the whole fairness stage on a
1,000,000-row seeded resample of Adult.

    .venv/bin/python bench/bench_fairness.py            # Fairlearn really run at 200 and 1,000 resamples (slow)
    .venv/bin/python bench/bench_fairness.py --quick    # Fairlearn run at --fairlearn-resamples, extrapolated

What is timed:

- **modelcert**: ``FairnessStage.run`` end to end on an in-memory evaluation context (the Adult rows with the demo
  model's predictions and scores as a predictions audit, so model inference is not part of it): groups for sex,
  race and sex×race, per-group rates, AUC and calibration error, Wilson/Newcombe/Katz intervals, the count bootstrap
  with ``statistics.bootstrap_resamples`` = 200 and 1,000, p-values and Holm adjustment, checks and summary.
- **Fairlearn**: per resample, rows drawn with replacement (seeded), then one ``MetricFrame`` per grouping (sex,
  race, sex×race) with selection rate, TPR, FPR, FNR and base rate — the per-group numbers the seven fairness
  metrics derive from. Point estimates of both are compared first (max absolute difference printed).
- **1M rows**: the same stage on 1,000,000 rows drawn with replacement from the Adult rows (seed 0); time and
  the process's RSS (``/proc/self/status`` VmRSS before/after, VmHWM peak). The demo model's prediction time for
  those rows is printed separately (``--with-model``), since a certification run predicts once per task.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "include" / "specs"


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def adult_with_predictions() -> tuple[pd.DataFrame, float]:
    """The demo's Adult train + test rows (48,842) with the demo model's prediction and score."""
    from modelcert.context import EvalContext
    from modelcert.spec import load_spec

    spec, _ = load_spec(SPECS / "adult_income.yaml")
    ctx = EvalContext(spec=spec, base_dir=SPECS)
    frames = [ctx.frame("train"), ctx.frame("test")]
    df = pd.concat(frames, ignore_index=True)
    t = time.perf_counter()
    score = ctx.score_features(df[ctx.features])
    seconds = time.perf_counter() - t
    return df.assign(pred=(score >= 0.5).astype(int), score=score), seconds


def audit_context(df: pd.DataFrame, resamples: int) -> Any:
    """An evaluation context over ``df`` in memory: a predictions audit of the demo model's outputs."""
    from modelcert.context import EvalContext
    from modelcert.spec import parse_spec

    spec = parse_spec({
        "model": {"name": "adult-bench", "version": "1", "owner": "bench"},
        "predictions": {"column": "pred", "positive": [1], "score_column": "score"},
        "use_case": {"description": "benchmark", "risk_tier": "high"},
        "data": {"test": "in-memory.csv", "label": "income_gt_50k", "positive_label": 1, "favorable_label": 1,
                 "protected_attributes": {"sex": {"privileged": ["Male"]}, "race": {"privileged": ["White"]}},
                 "intersections": [["sex", "race"]]},
        "checks": {"fairness": {"disparate_impact": {"min": 0.8, "max": 1.25},
                                "equal_opportunity_difference": {"abs_max": 0.1}}},
        "statistics": {"bootstrap_resamples": resamples, "seed": 0},
    })
    ctx = EvalContext(spec=spec, base_dir=REPO)
    ctx._frames["test"] = df  # noqa: SLF001 - the bench measures the stage, not the CSV reader
    return ctx


def time_stage(df: pd.DataFrame, resamples: int, repeat: int = 3) -> tuple[float, float, Any]:
    """(best wall seconds, CPU seconds of that run, outcome) over ``repeat`` warm runs."""
    from modelcert.stages.fairness import STAGE

    ctx = audit_context(df, resamples)
    out = STAGE.run(ctx)  # warm: imports, first allocations
    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        out = STAGE.run(ctx)
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, time.process_time() - c
    return best, cpu, out


def fairlearn_frames(df: pd.DataFrame, rows: np.ndarray | None = None) -> list[pd.DataFrame]:
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    metrics = {"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
               "fnr": false_negative_rate, "base_rate": lambda t, p: float(np.mean(t))}
    d = df if rows is None else df.iloc[rows]
    y, p = d["income_gt_50k"].to_numpy(), d["pred"].to_numpy()
    return [MetricFrame(metrics=metrics, y_true=y, y_pred=p, sensitive_features=d[cols]).by_group
            for cols in (["sex"], ["race"], ["sex", "race"])]


def time_fairlearn(df: pd.DataFrame, resamples: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a ``resamples``-draw row bootstrap of the three MetricFrames."""
    rng = np.random.default_rng(0)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(resamples):
        fairlearn_frames(df, rng.integers(0, len(df), len(df)))
    return time.perf_counter() - t, time.process_time() - c


def point_difference(df: pd.DataFrame, out: Any) -> float:
    """Largest |modelcert - Fairlearn| over every group rate of sex, race and sex×race."""
    from modelcert.fairness_groups import CROSS

    worst = 0.0
    for name, frame in zip(("sex", "race", "sex×race"), fairlearn_frames(df), strict=True):
        groups = {g["group"]: g for g in out.summary["attributes"][name]["groups"]}
        for idx, row in frame.iterrows():
            label = CROSS.join(map(str, idx)) if isinstance(idx, tuple) else str(idx)
            for key in ("selection_rate", "tpr", "fpr", "fnr", "base_rate"):
                ours, theirs = groups[label][key], row[key]
                if ours is None or np.isnan(theirs):
                    continue
                worst = max(worst, abs(ours - theirs))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="run Fairlearn at --fairlearn-resamples only and extrapolate linearly to 200 and 1,000")
    ap.add_argument("--fairlearn-resamples", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--with-model", action="store_true", help="also time the demo model's predictions on --rows")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    df, predict_s = adult_with_predictions()
    print(f"Adult: {len(df):,} rows (demo train + test), demo model predicted them in {predict_s:.2f} s")

    ours: dict[int, tuple[float, float]] = {}
    for resamples in (200, 1000):
        wall, cpu, out = time_stage(df, resamples)
        ours[resamples] = (wall, cpu)
    diff = point_difference(df, out)
    n_groups = sum(len(a["groups"]) for a in out.summary["attributes"].values())
    n_comp = out.summary["statistics"]["comparisons"]
    print(f"point estimates vs Fairlearn MetricFrame: max |difference| {diff:.1e} over {n_groups} groups "
          f"(sex, race, sex×race); {n_comp} judged comparisons")
    theirs: dict[int, tuple[float, float, str]] = {}
    if args.quick:
        k = args.fairlearn_resamples
        wall, cpu = time_fairlearn(df, k)
        for resamples in (200, 1000):
            how = "measured" if resamples == k else f"extrapolated from {k} resamples"
            theirs[resamples] = (wall / k * resamples, cpu / k * resamples, how)
    else:
        for resamples in (200, 1000):
            theirs[resamples] = (*time_fairlearn(df, resamples), "measured")

    print("\nwall seconds (CPU seconds of this process in brackets: the machine may be shared)")
    print(f"{'resamples':>9}  {'modelcert stage':>22}  {'Fairlearn MetricFrame bootstrap':>34}  {'ratio wall':>10}  "
          f"{'ratio CPU':>9}")
    for resamples in (200, 1000):
        (w1, c1), (w2, c2, how) = ours[resamples], theirs[resamples]
        print(f"{resamples:>9}  {w1:>8.3f} s ({c1:>7.3f} s)  {w2:>10.1f} s ({c2:>9.1f} s) {how}  {w2 / w1:>9,.0f}×  "
              f"{c2 / c1:>8,.0f}×")

    rng = np.random.default_rng(0)
    big = df.iloc[rng.integers(0, len(df), args.rows)].reset_index(drop=True)
    gc.collect()
    rss0 = _status("VmRSS")
    seconds, cpu, out = time_stage(big, 1000, repeat=3)
    rss1, hwm = _status("VmRSS"), _status("VmHWM")
    print(f"\nfairness stage on {args.rows:,} rows (Adult resampled, seed 0; 1,000 resamples): {seconds:.2f} s wall, "
          f"{cpu:.2f} s CPU (target < 2 s), status {out.status}; RSS {rss0:.0f} -> {rss1:.0f} MiB after, "
          f"peak (VmHWM) {hwm:.0f} MiB; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.with_model:
        from modelcert.context import EvalContext
        from modelcert.spec import load_spec

        spec, _ = load_spec(SPECS / "adult_income.yaml")
        ctx = EvalContext(spec=spec, base_dir=SPECS)
        t = time.perf_counter()
        ctx.score_features(big[ctx.features])
        print(f"demo model predict_proba on the same {args.rows:,} rows (not part of the stage above): "
              f"{time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
