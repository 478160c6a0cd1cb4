"""The evaluation cache: a run's datasets and its predictions, written once as Parquet by ``register`` and
memory-mapped by every stage, instead of each stage re-reading (and re-hashing) the CSV files and predicting the
test set again.

Layout: ``<cache dir>/<evidence digest>/<dataset>.parquet`` and ``predictions-<dataset>.parquet`` (``y_pred``,
``score``); the cache dir is :func:`modelcert.home.evaluation_cache_dir`. What was written is recorded in the
run's evidence (``run.evidence["cache"]``: file name, sha256, bytes, rows; for predictions also how long the
prediction took), in the results database, not next to the files.

Trust. A cached file is used only if its sha256 equals the one recorded at registration; the recorded bytes came
from datasets whose sha256 matched the evidence and from the model whose sha256 matched the spec (an untrusted
pickle model predicted in its sandbox). A file that is missing (a task retried on another Celery worker that
does not share the disk) or different (tampered, or written by another pyarrow) is not used: the stage reads
the source file, verified against the evidence as before, predicts again, and rewrites the cache file
atomically — so a tampered cache can slow a stage down but never change what it judges. Everything here is
idempotent: writing the same run's cache twice gives the same files (same data, same writer settings).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelcert.errors import ModelcertError
from modelcert.evidence import DATASETS
from modelcert.safe_yaml import short

if TYPE_CHECKING:
    import pandas as pd

    from modelcert.context import EvalContext

log = logging.getLogger("modelcert.cache")

#: run.evidence key of the manifest.
KEY = "cache"
#: Parquet writer settings: fixed, so the same frame gives the same bytes (no timestamps are written).
_WRITE = {"compression": "zstd", "use_dictionary": True, "write_statistics": False}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def run_dir(root: Path, digest: str) -> Path:
    return root / digest


def write_frame(df: pd.DataFrame, path: Path) -> dict[str, Any]:
    """Write ``df`` as Parquet atomically (temp file, then rename); returns its manifest entry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, **_WRITE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size, "rows": int(len(df))}


def read_frame(path: Path, entry: dict[str, Any]) -> pd.DataFrame | None:
    """The cached frame if the file exists and hashes to the recorded sha256, else None (with a log line)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        log.info("evaluation cache: %s is not on this machine; reading the source instead", path)
        return None
    actual = file_sha256(path)
    if actual != entry.get("sha256"):
        log.warning("evaluation cache: %s hashes to %s, registered %s; not used (reading the source instead)",
                    path, actual, entry.get("sha256"))
        return None
    return arrow_to_pandas(pq.read_table(path, memory_map=True))


def arrow_to_pandas(table: Any) -> pd.DataFrame:
    """``table.to_pandas()`` (same frame), consuming the table. ``self_destruct`` frees each column's Arrow
    buffers (decompressed into Arrow's memory pool) as soon as it is converted, so the peak is about one frame
    instead of the table plus the frame; then the pool hands what it freed back to the OS. Otherwise Arrow's
    allocator (mimalloc) keeps it for later Arrow allocations, which never come: the pandas and numpy work of the
    stage cannot reuse it, and a stage's RSS stayed ~0.6 GB per million rows above what it held."""
    import pyarrow as pa

    df = table.to_pandas(self_destruct=True)
    del table
    pa.default_memory_pool().release_unused()
    return df


def dataset_file(name: str) -> str:
    return f"{name}.parquet"


def predictions_file(name: str) -> str:
    return f"predictions-{name}.parquet"


def build(ctx: EvalContext, root: Path, digest: str) -> dict[str, Any]:
    """Write every dataset the evidence names and the model's predictions on the test set under
    ``root/digest``; return the manifest to store in the run's evidence. A dataset pyarrow cannot store as it
    is (e.g. a column of mixed Python types) is left out: stages then read its source file."""
    import pyarrow as pa

    assert ctx.evidence is not None
    out_dir = run_dir(root, digest)
    manifest: dict[str, Any] = {"datasets": {}, "predictions": {}}
    written: dict[object, dict[str, Any]] = {}  # source sha256 -> entry: one file for e.g. test = current
    for name, source in ctx.evidence.files.items():
        if name not in DATASETS:  # the model and a benchmark artifact are not tables
            continue
        if source["sha256"] in written:
            manifest["datasets"][name] = dict(written[source["sha256"]])
            continue
        try:
            manifest["datasets"][name] = write_frame(ctx.frame(name), out_dir / dataset_file(name))
            written[source["sha256"]] = manifest["datasets"][name]
        except (pa.ArrowException, TypeError, ValueError) as exc:
            log.warning("evaluation cache: data.%s not cached (%s: %s); stages read the source file",
                        name, type(exc).__name__, exc)
    if not ctx.spec.is_audit and "test" in ctx.evidence.files:
        try:
            manifest["predictions"]["test"] = write_predictions(ctx, "test", out_dir)
        except ModelcertError as exc:
            # A model that cannot be loaded or queried (refused, or stopped by the sandbox) is the stages' finding,
            # stored as their error with its reason: the cache is an optimisation and never fails registration.
            log.warning("evaluation cache: no predictions cached (%s); the stages query the model themselves",
                        short(str(exc), 300))
    return manifest


def write_predictions(ctx: EvalContext, dataset: str, out_dir: Path) -> dict[str, Any]:
    """Predict ``dataset`` (timed by the context) and write the predictions; returns the manifest entry."""
    y_pred, score = ctx.predictions(dataset)
    return store_predictions(y_pred, score, ctx.prediction_seconds.get(dataset), out_dir / predictions_file(dataset))


def store_predictions(y_pred: np.ndarray, score: np.ndarray | None, seconds: float | None,
                      path: Path) -> dict[str, Any]:
    import pandas as pd

    cols: dict[str, Any] = {"y_pred": y_pred}
    if score is not None:
        cols["score"] = score
    entry = write_frame(pd.DataFrame(cols), path)
    entry["predict_seconds"] = seconds
    return entry


def read_predictions(path: Path, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None] | None:
    df = read_frame(path, entry)
    if df is None:
        return None
    y_pred = df["y_pred"].to_numpy(dtype=np.int64)
    score = df["score"].to_numpy(dtype=float) if "score" in df.columns else None
    return y_pred, score
