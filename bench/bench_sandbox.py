"""Benchmark: what isolating a pickle model costs — start-up of the locked-down process and per-call overhead
of predict_proba through the pipe, against the same model called in-process.

    .venv/bin/python bench/bench_sandbox.py [--rows 1000] [--calls 200]

Uses the demo German credit model (a scikit-learn Pipeline), handed over as joblib bytes.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000, help="rows of the batch call")
    ap.add_argument("--calls", type=int, default=200, help="single-row calls timed")
    args = ap.parse_args()

    import joblib
    import numpy as np

    from modelcert.context import EvalContext
    from modelcert.sandbox import IsolatedModel, isolation_unavailable
    from modelcert.spec import load_spec

    reason = isolation_unavailable()
    if reason:
        raise SystemExit(f"cannot isolate on this machine: {reason}")
    spec_file = Path(__file__).resolve().parents[1] / "include" / "specs" / "german_credit.yaml"
    spec, _ = load_spec(spec_file)
    ctx = EvalContext(spec=spec, base_dir=spec_file.parent)
    model = ctx.model
    X = ctx.feature_frame("test")
    X = X.sample(n=args.rows, replace=len(X) < args.rows, random_state=0).reset_index(drop=True)
    buf = io.BytesIO()
    joblib.dump(model, buf)

    t0 = time.perf_counter()
    iso = IsolatedModel(buf.getvalue(), source="german_credit.joblib")
    start = time.perf_counter() - t0

    def timed(fn, rows: list) -> list[float]:  # type: ignore[no-untyped-def]
        out = []
        for r in rows:
            t = time.perf_counter()
            fn(r)
            out.append((time.perf_counter() - t) * 1e3)
        return out

    singles = [X.iloc[[i % len(X)]] for i in range(args.calls)]
    timed(iso.predict_proba, singles[:5])
    timed(model.predict_proba, singles[:5])
    iso_ms, in_ms = timed(iso.predict_proba, singles), timed(model.predict_proba, singles)
    t = time.perf_counter()
    a = iso.predict_proba(X)
    iso_batch = time.perf_counter() - t
    t = time.perf_counter()
    b = model.predict_proba(X)
    in_batch = time.perf_counter() - t
    iso.close()
    print(f"start-up (spawn, lockdown, imports, unpickle): {start:.2f} s (Landlock ABI {iso.landlock_abi})")
    print(f"single-row predict_proba, median of {args.calls}: isolated {statistics.median(iso_ms):.2f} ms, "
          f"in-process {statistics.median(in_ms):.2f} ms")
    print(f"batch of {len(X)} rows: isolated {iso_batch * 1e3:.1f} ms, in-process {in_batch * 1e3:.1f} ms; "
          f"max |difference| {float(np.max(np.abs(a - b))):.3g}")


if __name__ == "__main__":
    main()
