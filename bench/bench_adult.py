"""Benchmark: certify the Adult workload (48,842 rows) in-process and print each stage's seconds and peak memory.

Train = adult.data (32,561 rows), test = adult.test (16,281 rows), drift reference = train, current = test.
Target: all stage compute under 30 s on 2 cores.

    .venv/bin/python bench/bench_adult.py [--database-url URL] [--sample-size 100]

Libraries are imported before timing (a warm worker); the import cost is printed separately. Peak memory is
tracemalloc's peak of Python + NumPy allocations during the stage, and the process's max RSS at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import resource
import time
import tracemalloc
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--sample-size", type=int, default=100)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    from modelcert import pipeline
    from modelcert.cli import resolve_database_url
    from modelcert.db import migrate
    from modelcert.db.session import get_engine
    from modelcert.stages import REGISTRY, STAGE_NAMES

    t0 = time.perf_counter()
    spec_path = build_workload(OUT / "adult", args.sample_size)
    print(f"workload built (train 32,561 + test 16,281 rows, model trained) in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    for module in REGISTRY.values():
        importlib.import_module(module)
    import aif360.metrics  # noqa: F401
    import art.attacks.evasion  # noqa: F401
    import evidently  # noqa: F401
    import great_expectations  # noqa: F401
    print(f"library imports (paid once per worker process): {time.perf_counter() - t0:.1f}s")

    url = resolve_database_url(args.database_url)
    migrate.upgrade(url)
    engine = get_engine(url)
    reg = pipeline.register(engine, spec_path, run_key=f"bench/{uuid.uuid4()}")
    rows = []
    total = 0.0
    for name in STAGE_NAMES:
        tracemalloc.start()
        t = time.perf_counter()
        summary = pipeline.run_stage(engine, reg.run_id, name)
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        total += seconds
        rows.append({"stage": name, "status": summary["status"], "seconds": round(seconds, 2),
                     "peak_mib": round(peak, 1), "checks": summary["checks"]})
        print(f"  {name:<13} {summary['status']:<15} {seconds:7.2f} s   peak {peak:8.1f} MiB   "
              f"{summary['checks']} checks")
    decision = pipeline.decide(engine, reg.run_id)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"all stages: {total:.1f} s (target < 30 s on 2 cores)   process max RSS {maxrss:.0f} MiB   "
          f"decision: {decision['status']}")
    (OUT / "adult.json").write_text(json.dumps({"stages": rows, "total_seconds": round(total, 2),
                                                "max_rss_mib": round(maxrss), "decision": decision["status"],
                                                "spec_sha256": hashlib.sha256(spec_path.read_bytes()).hexdigest()},
                                               indent=2))


if __name__ == "__main__":
    main()
