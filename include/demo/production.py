"""Demo "production" data for recertification: what the German credit model sees after it was certified.

Written under ``include/demo/build/prod/`` (git-ignored) next to, never over, what ``build.py`` writes. Both
samples are drawn, seeded, from the 400 German credit rows the model never trained on (the test and current
splits of ``build.build_german``):

* ``german_credit_healthy_<date>.csv`` — a random sample of 250 of them: same population as at certification,
  every recertification check holds;
* ``german_credit_long_loans_<date>.csv`` — only applications for loans of 18 months or more (a product change
  re-weights the population): several features drift against the training data and the model's equal
  opportunity for young applicants degrades.

``<date>`` is the batch date (default: today, UTC); the specs pick the newest batch with a glob.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from modelcert.demo.build import BUILD_DIR, SEED, _split, load_german

PROD_DIR = BUILD_DIR / "prod"
HEALTHY_ROWS = 250
LONG_LOAN_MONTHS = 18


@dataclass(frozen=True)
class ProductionBatch:
    name: str
    path: Path
    rows: int
    sha256: str


def unseen_german() -> pd.DataFrame:
    """The German credit rows outside the training split (the same split as ``build.build_german``)."""
    df = load_german()
    _, rest = _split(df, 0.4, "credit_risk")
    test, current = _split(rest, 0.5, "credit_risk")
    return pd.concat([test, current], ignore_index=True)


def healthy_sample(unseen: pd.DataFrame) -> pd.DataFrame:
    return unseen.sample(n=HEALTHY_ROWS, random_state=SEED).reset_index(drop=True)


def long_loans_sample(unseen: pd.DataFrame) -> pd.DataFrame:
    return unseen[unseen["duration_months"] >= LONG_LOAN_MONTHS].reset_index(drop=True)


def build_production(out: Path = PROD_DIR, *, batch_date: str | None = None) -> dict[str, ProductionBatch]:
    """Write the two production batches for ``batch_date`` (YYYY-MM-DD, default today UTC)."""
    date = batch_date or datetime.now(UTC).strftime("%Y-%m-%d")
    out.mkdir(parents=True, exist_ok=True)
    unseen = unseen_german()
    batches: dict[str, ProductionBatch] = {}
    for name, frame in (("healthy", healthy_sample(unseen)), ("long_loans", long_loans_sample(unseen))):
        path = out / f"german_credit_{name}_{date}.csv"
        frame.to_csv(path, index=False, lineterminator="\n")
        batches[name] = ProductionBatch(name=name, path=path, rows=len(frame),
                                        sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    return batches


if __name__ == "__main__":  # pragma: no cover
    for b in build_production().values():
        print(f"{b.name}: {b.rows} rows  {b.path}  sha256 {b.sha256[:16]}")
