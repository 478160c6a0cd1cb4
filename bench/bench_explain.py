"""Benchmark: the explainability stage on Adult (48,842 rows) next to the robustness stage, in one run.

The workload is bench_adult's (train 32,561 rows, test 16,281 rows, a HistGradientBoosting pipeline). Each stage
runs warm (libraries imported first, import cost printed separately), through ``pipeline.run_stage`` (reads the
data, stores the results), without tracemalloc. Memory is the kernel's: the process's resident-set high-water
mark (VmHWM) is reset before each stage (``/proc/self/clear_refs`` = 5) and read after it, next to the RSS the
stage started from.

Two explainability runs: without a reference model (importance, proxies, weak slices), and with the same model
as a ``benchmark`` (adds scoring the benchmark and the paired bootstrap of 1,000 resamples over 16,281 rows).

    .venv/bin/python bench/bench_explain.py [--database-url URL] [--sample-size 100]

Target (issue 11): the explainability stage adds no more than the robustness stage does.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
import uuid
import warnings
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _status(field: str) -> int:
    """A VmXXX field of /proc/self/status in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--sample-size", type=int, default=100, help="robustness sample (as bench_adult)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    from bench_adult import build_workload

    from modelcert import pipeline
    from modelcert.cli import resolve_database_url
    from modelcert.db import migrate
    from modelcert.db.session import get_engine
    from modelcert.stages import REGISTRY

    t0 = time.perf_counter()
    spec_path = build_workload(OUT / "adult", args.sample_size)
    spec = yaml.safe_load(spec_path.read_text())
    with_benchmark = spec_path.with_name("spec_benchmark.yaml")
    spec["benchmark"] = {"artifact": spec["model"]["artifact"], "sha256": spec["model"]["sha256"],
                         "trusted_types": spec["model"]["trusted_types"]}
    spec["model"]["version"] = "2"
    with_benchmark.write_text(yaml.safe_dump(spec, sort_keys=False))
    print(f"workload built (train 32,561 + test 16,281 rows, model trained) in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    for name in ("robustness", "explainability"):
        importlib.import_module(REGISTRY[name])
    import art.attacks.evasion  # noqa: F401
    import shap  # noqa: F401
    import statsmodels.stats.multitest  # noqa: F401
    print(f"library imports (paid once per worker process): {time.perf_counter() - t0:.1f}s")

    url = resolve_database_url(args.database_url)
    migrate.upgrade(url)
    engine = get_engine(url)
    rows = []
    plan = [(spec_path, "robustness", "robustness"), (spec_path, "explainability", "explainability"),
            (with_benchmark, "explainability", "explainability + benchmark comparison")]
    runs: dict[Path, str] = {}
    resettable = _reset_peak()
    for path, stage, label in plan:
        if path not in runs:
            runs[path] = pipeline.register(engine, path, run_key=f"bench-explain/{uuid.uuid4()}").run_id
        rss_before = _status("VmRSS") / 1024
        _reset_peak()
        t = time.perf_counter()
        summary = pipeline.run_stage(engine, runs[path], stage)
        seconds = time.perf_counter() - t
        peak = _status("VmHWM") / 1024
        rows.append({"stage": label, "status": summary["status"], "seconds": round(seconds, 2),
                     "rss_before_mib": round(rss_before), "peak_rss_mib": round(peak),
                     "added_mib": round(peak - rss_before), "checks": summary["checks"]})
        print(f"  {label:<38} {summary['status']:<8} {seconds:7.2f} s   RSS {rss_before:6.0f} -> peak {peak:6.0f} MiB "
              f"(+{peak - rss_before:.0f})   {summary['checks']} checks")
    if not resettable:
        print("  (the kernel refused to reset VmHWM: peaks are the process's high-water mark so far)")
    rob, exp, cmp = rows
    print(f"explainability / robustness: {exp['seconds'] / rob['seconds']:.2f}x time "
          f"(with the benchmark comparison {cmp['seconds'] / rob['seconds']:.2f}x); "
          f"memory added {exp['added_mib']} vs {rob['added_mib']} MiB")
    (OUT / "explain.json").write_text(json.dumps({"stages": rows, "vmhwm_reset": resettable}, indent=2))


if __name__ == "__main__":
    main()
