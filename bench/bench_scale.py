"""Benchmark: certify Adult resampled (seeded, with replacement) to 1 M and 10 M rows in-process and print wall time,
CPU time and peak RSS (from the kernel) per step and in total, and how time grows when rows double.

    .venv/bin/python bench/bench_scale.py [--rows 1000000 10000000] [--format csv|parquet] [--database-url URL]

N rows are split like Adult itself (train 2/3, test 1/3); drift compares train (reference) with test (current),
as in ``bench_adult.py``; the model is the Adult benchmark model trained on the original 32,561 rows. Files are
generated under a temporary directory (deleted afterwards), never in the repository.

Targets on 2 cores: 10 M rows < 4 GB peak RSS and < 3 min; 1 M rows < 15 s; doubling rows <= 2.1x time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import yaml
from bench_adult import OUT, build_workload, certify, status_mib, warm_imports

ADULT_TRAIN_SHARE = 32_561 / 48_842


def resample(src: Path, out: Path, rows: int, fmt: str, seed: int = 0) -> Path:
    """Adult's train and test sets resampled to ``rows`` rows in all, written as ``fmt``; returns the spec."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    spec = yaml.safe_load((src / "spec.yaml").read_text())
    rng = np.random.default_rng(seed)
    n_train = int(round(rows * ADULT_TRAIN_SHARE))
    for name, n in (("train", n_train), ("test", rows - n_train)):
        df = pd.read_csv(src / f"{name}.csv")
        big = df.iloc[rng.integers(0, len(df), size=n)].reset_index(drop=True)
        table = pa.Table.from_pandas(big, preserve_index=False)
        del big
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, path)
        else:
            import pyarrow.parquet as pq

            pq.write_table(table, path)
        spec["data"][name] = path.name
    spec["data"]["current"] = spec["data"]["test"]
    shutil.copy(src / "model.skops", out / "model.skops")
    path = out / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ap.add_argument("--database-url")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    from modelcert.db import migrate
    from modelcert.db.session import get_engine
    from modelcert.home import resolve_database_url

    src = OUT / "adult"
    if not (src / "spec.yaml").is_file():
        build_workload(src, 100)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"library imports {warm_imports():.1f}s, RSS after imports {status_mib('VmRSS'):.0f} MiB", flush=True)
    url = resolve_database_url(args.database_url)
    migrate.upgrade(url)
    engine = get_engine(url)
    results: dict[int, list[dict[str, object]]] = {}
    for rows in args.rows:
        tmp = Path(tempfile.mkdtemp(prefix="modelcert-scale-"))
        os.environ["MODELCERT_CACHE_DIR"] = str(tmp / "cache")
        try:
            t0 = time.perf_counter()
            spec = resample(src, tmp, rows, args.format)
            size = sum(p.stat().st_size for p in tmp.iterdir() if p.suffix == f".{args.format}")
            print(f"{rows:,} rows generated as {args.format} ({size / 2**20:.0f} MiB) in "
                  f"{time.perf_counter() - t0:.0f} s (not timed below)", flush=True)
            results[rows], _ = certify(engine, spec, f"{rows / 1e6:g}M")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nrows        total wall   total CPU   peak RSS")
    for rows, steps in results.items():
        t = steps[-1]
        print(f"{rows:>10,}  {t['wall_s']:>9} s  {t['cpu_s']:>8} s  {t['peak_rss_mib']:>6} MiB")
    ordered = sorted(results)
    for a, b in zip(ordered, ordered[1:], strict=False):
        wa, wb = float(results[a][-1]["wall_s"]), float(results[b][-1]["wall_s"])  # type: ignore[arg-type]
        ca, cb = float(results[a][-1]["cpu_s"]), float(results[b][-1]["cpu_s"])  # type: ignore[arg-type]
        import math

        doublings = math.log2(b / a)
        print(f"{a:,} -> {b:,} rows: time x{wb / wa:.2f} wall, x{cb / ca:.2f} CPU over {doublings:.2f} doublings "
              f"= x{(wb / wa) ** (1 / doublings):.2f} wall, x{(cb / ca) ** (1 / doublings):.2f} CPU per doubling")
    (OUT / f"scale-{args.format}.json").write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
