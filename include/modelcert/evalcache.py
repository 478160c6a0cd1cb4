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
#: Rows converted to Arrow and written at a time (pyarrow's default row-group size).
WRITE_CHUNK_ROWS = 1024 * 1024


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

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        if len(df) > WRITE_CHUNK_ROWS:
            # Converted and written WRITE_CHUNK_ROWS rows at a time (one row group each, where write_table cuts
            # them too): the Arrow copy of the frame never exists whole (~1.1 GB for 6.7 M Adult rows). Same
            # schema and pandas metadata as the whole frame's (the index is stored as a column either way).
            schema = pa.Schema.from_pandas(df, preserve_index=True)
            with pq.ParquetWriter(tmp, schema, **_WRITE) as writer:
                for start in range(0, len(df), WRITE_CHUNK_ROWS):
                    chunk = df.iloc[start:start + WRITE_CHUNK_ROWS]
                    writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=True),
                                       row_group_size=WRITE_CHUNK_ROWS)
        else:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=True), tmp, **_WRITE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size, "rows": int(len(df))}


def read_frame(path: Path, entry: dict[str, Any]) -> pd.DataFrame | None:
    """The cached frame if the file exists and hashes to the recorded sha256, else None (with a log line)."""

    if not path.is_file():
        log.info("evaluation cache: %s is not on this machine; reading the source instead", path)
        return None
    actual = file_sha256(path)
    if actual != entry.get("sha256"):
        log.warning("evaluation cache: %s hashes to %s, registered %s; not used (reading the source instead)",
                    path, actual, entry.get("sha256"))
        return None
    return read_parquet_frame(path)


def read_parquet_frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``pq.read_table(path, columns=columns).to_pandas()`` — the same frame, in far less memory.

    Text columns are decoded as dictionaries (each distinct string once, then 1-4 byte indices per row) instead of
    one Arrow string per cell (~14 bytes a row each: 1.3 GB for Adult's 9 text columns at 10 M rows), and turned
    into the object columns ``to_pandas`` gives (the same strings, shared; None where the value is null).
    ``self_destruct`` frees each column's Arrow buffers as soon as it is converted, and the pool then hands what
    it freed back to the OS: Arrow's allocator (mimalloc) would keep it for Arrow allocations that never come,
    and a stage's pandas and numpy work cannot reuse it (RSS stayed ~0.3 GB per million rows higher)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path, memory_map=True)
    # Columns pandas wrote with another dtype than object (e.g. StringDtype) keep their plain conversion.
    not_object = {str(c.get("field_name")) for c in (schema.pandas_metadata or {}).get("columns", [])
                  if c.get("numpy_type") != "object"}
    wanted = schema.names if columns is None else columns
    text = [n for n in wanted
            if n in schema.names and n not in not_object
            and (pa.types.is_string(schema.field(n).type) or pa.types.is_large_string(schema.field(n).type))]
    table = pq.read_table(path, columns=columns, memory_map=True, read_dictionary=text)
    df = table.to_pandas(self_destruct=True)
    del table
    pa.default_memory_pool().release_unused()
    for name in text:
        col = df[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            values = np.asarray(col.cat.categories, dtype=object).take(col.cat.codes.to_numpy())
            values[col.cat.codes.to_numpy() == -1] = None  # to_pandas gives None for a null string
            df[name] = pd.Series(values, index=df.index, name=name, dtype=object)
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
