"""Benchmark: certify the Adult workload (48,842 rows) in-process and print each stage's wall time, CPU time and
peak RSS, all read from the kernel (no tracemalloc: it inflated stage times 2-4x and counted Python allocations
only).

Train = adult.data (32,561 rows), test = adult.test (16,281 rows), drift reference = train, current = test.
Target: all stage compute under 30 s on 2 cores.

    .venv/bin/python bench/bench_adult.py [--database-url URL] [--sample-size 100]

Libraries are imported before timing (a warm worker); the import cost is printed separately. ``register`` (hash,
validate, write the evaluation cache, predict the test set once) is timed like a stage. Peak RSS per step: the
process's high-water mark (``VmHWM``) is reset before the step (``/proc/self/clear_refs``) and read after it; CPU
is user + system time of this process and its children (the sandbox of a pickle model).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import resource
import time
import uuid
import warnings
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent / "results"


def build_workload(out: Path, sample_size: int) -> Path:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    from modelcert.demo.build import ADULT_COLUMNS, dataset_dir, dump_skops_reproducibly, tabular_pipeline

    d = dataset_dir() / "adult"
    train = pd.read_csv(d / "adult.data", header=None, names=ADULT_COLUMNS, sep=", ", engine="python")
    test = pd.read_csv(d / "adult.test", header=None, names=ADULT_COLUMNS, sep=", ", engine="python", skiprows=1)
    for df in (train, test):
        df["income_gt_50k"] = df["income"].str.rstrip(".").eq(">50K").astype(int)
        df.drop(columns=["income"], inplace=True)
        for col in df.select_dtypes(include="object").columns:
            df[col] = df[col].replace("?", "Unknown")
    numeric = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    categorical = ["workclass", "marital_status", "occupation", "relationship", "race", "sex"]
    model = tabular_pipeline(numeric, categorical, HistGradientBoostingClassifier(max_iter=150, random_state=0))
    model.fit(train[numeric + categorical], train["income_gt_50k"])
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    digest = dump_skops_reproducibly(model, out / "model.skops")
    spec = {
        "model": {"name": "adult-bench", "version": "1", "owner": "bench", "artifact": "model.skops", "sha256": digest,
                  "features": numeric + categorical,
                  "trusted_types": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]},
        "use_case": {"description": "benchmark", "intended_use": "benchmark", "risk_tier": "high"},
        "governance": {"data_retention_days": 30, "consent_basis": "public data",
                       "protected_feature_justification": {"sex": "benchmark", "race": "benchmark",
                                                           "age": "benchmark"}},
        "data": {"train": "train.csv", "test": "test.csv", "current": "test.csv", "label": "income_gt_50k",
                 "extra_columns": ["fnlwgt", "education", "native_country"],  # in the file, unused by the model
                 "protected_attributes": {"sex": {"privileged": ["Male"]}, "race": {"privileged": ["White"]},
                                          "age": {"privileged": {"min": 25}}}},
        "checks": {"robustness": {"attacks": ["hop_skip_jump"], "eps": [0.05, 0.1], "sample_size": sample_size},
                   "data_quality": {"duplicate_fraction": {"max": 0.05, "required": False},
                                    "leakage_fraction": {"max": 0.05, "required": False}}},
    }
    path = out / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class Meter:
    """Wall, CPU (user + system, this process and waited-for children) and peak RSS of one step, from the kernel."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.peak_mib = 0.0

    @staticmethod
    def _cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def __enter__(self) -> Meter:
        reset_peak_rss()
        self._t, self._c = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._t, self._cpu() - self._c
        self.peak_mib = status_mib("VmHWM")


def reset_peak_rss() -> None:
    """Reset this process's RSS high-water mark (Linux >= 4.0): VmHWM then reports the peak of what follows."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def status_mib(key: str) -> float:
    """A memory figure of this process from /proc/self/status (VmHWM = peak RSS, VmRSS = current), in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def certify(engine: object, spec_path: Path, label: str) -> tuple[list[dict[str, object]], str]:
    """Register and run every stage in this process, printing one line per step; returns the rows and the gate's
    decision."""
    from modelcert import pipeline
    from modelcert.stages import STAGE_NAMES

    rows: list[dict[str, object]] = []

    def line(name: str, status: str, m: Meter, extra: str = "") -> None:
        rows.append({"step": name, "status": status, "wall_s": round(m.wall, 2), "cpu_s": round(m.cpu, 2),
                     "peak_rss_mib": round(m.peak_mib)})
        print(f"  {label:<8} {name:<13} {status:<15} wall {m.wall:7.2f} s   cpu {m.cpu:7.2f} s   "
              f"peak RSS {m.peak_mib:7.0f} MiB   {extra}", flush=True)

    with Meter() as m:
        reg = pipeline.register(engine, spec_path, run_key=f"bench/{uuid.uuid4()}")  # type: ignore[arg-type]
    line("register", reg.status, m)
    for name in STAGE_NAMES:
        with Meter() as m:
            summary = pipeline.run_stage(engine, reg.run_id, name)  # type: ignore[arg-type]
        line(name, summary["status"], m, f"{summary['checks']} checks")
    decision = pipeline.decide(engine, reg.run_id)  # type: ignore[arg-type]
    total_wall = sum(float(r["wall_s"]) for r in rows)  # type: ignore[arg-type]
    total_cpu = sum(float(r["cpu_s"]) for r in rows)  # type: ignore[arg-type]
    peak = max(float(r["peak_rss_mib"]) for r in rows)  # type: ignore[arg-type]
    rows.append({"step": "total", "status": decision["status"], "wall_s": round(total_wall, 2),
                 "cpu_s": round(total_cpu, 2), "peak_rss_mib": round(peak)})
    print(f"  {label:<8} {'total':<13} {decision['status']:<15} wall {total_wall:7.2f} s   cpu {total_cpu:7.2f} s   "
          f"peak RSS {peak:7.0f} MiB", flush=True)
    return rows, str(decision["status"])


def warm_imports() -> float:
    """Import every stage's libraries (what a warm worker has paid already); returns the seconds it took."""
    from modelcert.stages import REGISTRY

    t0 = time.perf_counter()
    for module in REGISTRY.values():
        importlib.import_module(module)
    import aif360.metrics  # noqa: F401
    import art.attacks.evasion  # noqa: F401
    import evidently  # noqa: F401
    import evidently.legacy.calculations.stattests  # noqa: F401
    import great_expectations  # noqa: F401
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--sample-size", type=int, default=100)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    from modelcert.db import migrate
    from modelcert.db.session import get_engine
    from modelcert.home import resolve_database_url

    t0 = time.perf_counter()
    spec_path = build_workload(OUT / "adult", args.sample_size)
    print(f"workload built (train 32,561 + test 16,281 rows, model trained) in {time.perf_counter() - t0:.1f}s")
    print(f"library imports (paid once per worker process): {warm_imports():.1f}s   "
          f"RSS after imports {status_mib('VmRSS'):.0f} MiB")

    url = resolve_database_url(args.database_url)
    migrate.upgrade(url)
    engine = get_engine(url)
    rows, decision = certify(engine, spec_path, "adult")
    total = rows[-1]
    print(f"all steps: {total['wall_s']} s wall, {total['cpu_s']} s CPU (target < 30 s on 2 cores)   "
          f"peak RSS {total['peak_rss_mib']} MiB   decision: {decision}")
    (OUT / "adult.json").write_text(json.dumps({"steps": rows, "decision": decision,
                                                "spec_sha256": hashlib.sha256(spec_path.read_bytes()).hexdigest()},
                                               indent=2))


if __name__ == "__main__":
    main()
