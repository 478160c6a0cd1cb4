"""What a stage sees: the validated spec, its datasets, the model (loaded only after its hash matched) and
helpers that turn labels, predictions and protected groups into arrays with clear errors."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelcert import evalcache
from modelcert.errors import ArtifactError, DataError
from modelcert.evidence import Evidence, dataset_paths, sha256_file
from modelcert.policy import load_policy
from modelcert.policy import problems as policy_problems
from modelcert.safe_yaml import clip, short
from modelcert.spec import CertificationSpec, GroupRange, resolve_path

#: Share of a text column's values that must parse as numbers for it to count as a numeric column with a few
#: stray strings (when no training data says what the column is).
NUMERIC_SHARE = 0.9


def read_table(path: Path, *, field_name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A dataset file as a DataFrame. Parquet is memory-mapped and, given ``columns``, only those of its columns
    that exist are read (the file's other columns are never decoded)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            if columns is not None:
                present = set(pq.read_schema(path).names)
                columns = [c for c in dict.fromkeys(columns) if c in present]
            return evalcache.read_parquet_frame(path, columns)
        if suffix in (".csv", ".txt"):
            return read_csv_compact(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes a field-named DataError
        raise DataError(f"{field_name}: cannot read {short(str(path))} as {suffix.lstrip('.')}: "
                        f"{clip(str(exc), 200)}") from exc
    raise DataError(f"{field_name}: {short(str(path))} has suffix {short(suffix)}; allowed: .csv, .parquet")


#: Rows (all frames of a context together) from which freeing a context's frames is followed by a full garbage
#: collection (see :meth:`EvalContext.release`).
COLLECT_ROWS = 2_000_000
#: Rows per model call when predicting a dataset (the model is row-wise: batches give the same predictions).
PREDICT_BATCH = 131_072
#: From this many rows a prediction is limited to one native thread (see :meth:`EvalContext.score_features`);
#: the robustness and latency code limit their own small calls.
SINGLE_THREAD_ROWS = 4_096
#: Rows read first to find a CSV file's text columns (see :func:`read_csv_compact`).
CSV_SNIFF_ROWS = 10_000
_BOOL_TEXT = {"true", "false"}


def read_csv_compact(path: Path) -> pd.DataFrame:
    """``pd.read_csv(path)``, same values and dtypes, in a fraction of the memory for text columns.

    pandas makes one Python string per cell of a text column (~50 bytes each: ~3 GB for 9 text columns of 6.7 M
    rows). Columns that are text in the first rows are parsed as categoricals instead (one string per distinct
    value) and turned back into object columns that share those strings. It is the same data: a categorical's
    categories are always parsed as strings, as pandas parses a text column; a column where any category looks
    like a number or a boolean (which ``read_csv`` may have converted in part, chunk by chunk) is read again the
    plain way."""
    head = pd.read_csv(path, nrows=CSV_SNIFF_ROWS)
    text = [c for c in head.columns
            if head[c].dtype == object and head[c].map(type).isin([str, float]).all() and head[c].notna().any()]
    if not text or len(head) < CSV_SNIFF_ROWS:
        return head if len(head) < CSV_SNIFF_ROWS else pd.read_csv(path)
    df = pd.read_csv(path, dtype={c: "category" for c in text})
    for c in text:
        cats = pd.Series(df[c].cat.categories, dtype=object)
        if pd.to_numeric(cats, errors="coerce").notna().any() or cats.str.lower().isin(_BOOL_TEXT).any():
            return pd.read_csv(path)
        df[c] = df[c].astype(object)
    return df


def load_model_file(path: Path, *, fmt: str, expected_sha256: str, trusted_types: Iterable[str],
                    refusals: Sequence[str] = ()) -> Any:
    """Deserialize a model from bytes whose sha256 equals the one the spec declares.

    The file is read once and those bytes are both hashed and loaded, so it cannot be swapped between the
    check and the load. ``refusals`` (the policy's objections) are raised after the hash check, so a
    tampered file is reported as tampered first. skops constructs only the types it trusts by default plus
    ``trusted_types`` and stays in this process; joblib (pickle) runs arbitrary code on load, so it is loaded
    and queried only in the isolated model process (:mod:`modelcert.sandbox`), which returns a proxy — and is
    refused where the kernel cannot isolate it."""
    shown = clip(repr(str(path)), 120)
    if not path.is_file():
        raise ArtifactError(f"model.artifact: file {shown} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"model.artifact: cannot read {shown}: {clip(str(exc), 120)}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ArtifactError(
            f"model.sha256: the artifact {shown} hashes to {actual}, but the spec declares {expected_sha256}; "
            "refusing to load it"
        )
    if refusals:
        raise ArtifactError("; ".join(refusals))
    if fmt == "joblib":
        from modelcert.sandbox import IsolatedModel

        return IsolatedModel(data, source=str(path))
    if fmt != "skops":
        raise ArtifactError(f"model.format: {clip(repr(fmt), 40)} is not a known format; allowed: skops, joblib")
    try:
        import skops.io as sio

        untrusted = sio.get_untrusted_types(data=data)
        refused = sorted(set(untrusted) - set(trusted_types))
        if refused:
            raise ArtifactError(
                f"model.trusted_types: the skops file {shown} contains types skops does not trust by default: "
                f"{clip(str(refused), 300)}; list them under model.trusted_types if the owner vouches for them "
                "(each must also be in the policy's reviewed skops_trusted_types)"
            )
        return sio.loads(data, trusted=list(untrusted))
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, TypeError, KeyError, OSError, io.UnsupportedOperation) as exc:
        raise ArtifactError(f"model.artifact: {shown} is not a readable skops model file: "
                            f"{clip(str(exc), 200)}") from exc
    except Exception as exc:  # noqa: BLE001 - a damaged archive can raise anything
        raise ArtifactError(f"model.artifact: loading {shown} as skops failed: {type(exc).__name__}: "
                            f"{clip(str(exc), 200)}") from exc


@dataclass
class EvalContext:
    """Inputs of one certification run, loaded lazily so a stage pays only for what it uses."""

    spec: CertificationSpec
    base_dir: Path
    evidence: Evidence | None = None
    #: The evaluation cache (``modelcert.evalcache``): its manifest from the run's evidence and the local folder
    #: of cache folders. None = read the source files and predict (preflight, tests, recertification).
    cache: dict[str, Any] | None = None
    cache_root: Path | None = None
    #: dataset -> seconds the model took to predict it in this context (for throughput).
    prediction_seconds: dict[str, float] = field(default_factory=dict)
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    _paths: dict[str, Path] = field(default_factory=dict, repr=False)
    _checked_features: set[str] = field(default_factory=set, repr=False)

    # ---------------------------------------------------------------- data
    def has(self, dataset: str) -> bool:
        return (getattr(self.spec.data, dataset) is not None
                or (dataset == "reference" and self.spec.data.train is not None))

    def frame(self, dataset: str) -> pd.DataFrame:
        """A dataset by role: train, test, reference (defaults to train) or current."""
        if dataset not in self._frames:
            paths = dataset_paths(self.spec, self.base_dir)
            name = dataset
            if dataset == "reference" and "reference" not in paths:
                name = "train"
            if name not in paths:
                raise DataError(f"data.{dataset}: no {dataset} dataset is given in the spec")
            path = paths[name]
            same = [d for d, p in self._paths.items() if p == path and d in self._frames]
            if same:  # e.g. current is the test file, reference the training file: one read, one frame
                self._frames[dataset] = self._frames[same[0]]
                return self._frames[dataset]
            self._paths[dataset] = path
            cached = self._cached_frame(name)
            if cached is not None:
                self._frames[dataset] = cached
                return cached
            if not path.is_file():
                raise DataError(f"data.{name}: file {str(path)!r} does not exist")
            if self.evidence is not None and name in self.evidence.files:
                expected = self.evidence.files[name]["sha256"]
                actual = sha256_file(path)
                if actual != expected:
                    raise DataError(
                        f"data.{name}: {str(path)!r} changed since the run was registered "
                        f"(sha256 {actual}, registered {expected}); start a new run"
                    )
            df = read_table(path, field_name=f"data.{name}", columns=self.declared_columns())
            if df.empty:
                raise DataError(f"data.{name}: {str(path)!r} has no rows")
            self._frames[dataset] = df
            self._rewrite_cache("datasets", name, lambda target: evalcache.write_frame(df, target))
        return self._frames[dataset]

    def source_columns(self, dataset: str) -> list[str]:
        """The columns of a dataset's file as it is (a Parquet file's schema, without reading it): what preflight
        checks for undeclared columns, since a Parquet input is read pruned to the declared ones."""
        paths = dataset_paths(self.spec, self.base_dir)
        path = paths.get(dataset)
        if path is not None and path.suffix.lower() == ".parquet" and path.is_file():
            import pyarrow.parquet as pq

            try:
                return [str(c) for c in pq.read_schema(path).names if not str(c).startswith("__index_level_")]
            except Exception as exc:  # noqa: BLE001 - an unreadable file is reported by frame() in one line
                raise DataError(f"data.{dataset}: cannot read {short(str(path))} as parquet: "
                                f"{clip(str(exc), 200)}") from exc
        return [str(c) for c in self.frame(dataset).columns]

    def declared_columns(self) -> list[str] | None:
        """Columns a Parquet input is read with: every column the spec uses or declares under
        ``data.extra_columns`` (preflight refuses files with other columns, so nothing judged is left out).
        None (all columns) when the spec does not say which columns a model reads (predictions audits)."""
        if self.spec.is_audit:
            return None
        return list(used_columns(self.spec)) + list(self.spec.data.extra_columns)

    # ---------------------------------------------------------------- evaluation cache
    def _cache_dir(self) -> Path | None:
        if self.cache is None or self.cache_root is None or self.evidence is None:
            return None
        return evalcache.run_dir(self.cache_root, self.evidence.digest)

    def _cached_frame(self, name: str) -> pd.DataFrame | None:
        folder = self._cache_dir()
        entry = (self.cache or {}).get("datasets", {}).get(name)
        if folder is None or entry is None:
            return None
        return evalcache.read_frame(folder / entry["file"], entry)

    def _rewrite_cache(self, kind: str, name: str, write: Any) -> None:
        """After a cache miss (file absent on this worker, or not the registered bytes): write it again from what
        was just read from the verified source, so the next stage on this machine finds it."""
        folder = self._cache_dir()
        entry = (self.cache or {}).get(kind, {}).get(name)
        if folder is None or entry is None:
            return
        try:
            write(folder / entry["file"])
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation: a failed write costs time only
            import logging

            logging.getLogger("modelcert.cache").warning("evaluation cache: could not rewrite %s %s: %s",
                                                         kind, name, exc)

    def require_columns(self, df: pd.DataFrame, columns: list[str], *, dataset: str, field_name: str) -> None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(
                f"{field_name}: column(s) {short(missing[:10], 200)} missing from data.{dataset} "
                f"(it has {len(df.columns)} columns: {clip(', '.join(map(str, list(df.columns)[:25])), 300)}"
                f"{', …' if len(df.columns) > 25 else ''})"
            )

    # ---------------------------------------------------------------- labels
    def labels(self, dataset: str = "test") -> np.ndarray:
        """The label as 0/1, 1 = ``data.positive_label``. Errors on a missing, null or non-binary label."""
        df = self.frame(dataset)
        label = self.spec.data.label
        self.require_columns(df, [label], dataset=dataset, field_name="data.label")
        col = df[label]
        if col.isna().any():
            raise DataError(f"data.label: column {label!r} of data.{dataset} has {int(col.isna().sum())} null value(s)")
        values = sorted(pd.unique(col).tolist(), key=str)
        if len(values) > 2:
            raise DataError(
                f"data.label: column {short(label)} of data.{dataset} is not binary: {len(values)} distinct values "
                f"{short(values[:10], 200)}{' …' if len(values) > 10 else ''}; a binary classification label has "
                "exactly two"
            )
        if len(values) < 2:
            raise DataError(
                f"data.label: column {short(label)} of data.{dataset} has a single class {short(values, 120)}; "
                "certification needs both classes present (performance and fairness judge errors on each)"
            )
        matches = self._label_matches(col, self.spec.data.positive_label)
        if not matches.any():
            raise DataError(
                f"data.positive_label: {short(self.spec.data.positive_label)} does not occur in column {short(label)} "
                f"of data.{dataset} (values: {short(values, 120)})"
            )
        if not self._label_matches(col, self.spec.data.favorable_label).any():
            # Otherwise fairness would silently treat the other class as the favorable outcome.
            raise DataError(
                f"data.favorable_label: {short(self.spec.data.favorable_label)} does not occur in column "
                f"{short(label)} of data.{dataset} (values: {short(values, 120)}); name the label value that is the "
                "favorable outcome for the person"
            )
        return matches.to_numpy(dtype=np.int64)

    @staticmethod
    def _label_matches(col: pd.Series, value: Any) -> pd.Series:
        """Rows whose label equals ``value``, also when YAML and CSV disagree on the type (1 vs "1")."""
        matches = col == value
        if not matches.any():
            matches = col.astype(str) == str(value)
        return matches

    @property
    def favorable_is_positive(self) -> bool:
        """Whether the favorable outcome is the positive class (True for credit approval, False for recidivism)."""
        fav, pos = self.spec.data.favorable_label, self.spec.data.positive_label
        return fav == pos or str(fav) == str(pos)

    # ---------------------------------------------------------------- model
    @cached_property
    def model(self) -> Any:
        m = self.spec.model
        if m.artifact is None:
            raise ArtifactError("model.artifact: this spec audits predictions only; no model is given")
        path = resolve_path(m.artifact, self.base_dir)
        expected = m.sha256
        assert expected is not None  # the spec validator guarantees it
        # The policy, not the submitter, decides the format and which skops types may be built: a spec's
        # trusted_types count only where the policy's reviewed list has them (register refuses the rest).
        policy = load_policy()
        reviewed = policy.trusted_types(self.spec.use_case.risk_tier)
        model = load_model_file(path, fmt=m.format or "skops", expected_sha256=expected,
                                trusted_types=[t for t in m.trusted_types if t in reviewed],
                                refusals=[p for p in policy_problems(self.spec, policy)
                                          if p.startswith("model.format")])
        if not hasattr(model, "predict_proba") and not hasattr(model, "predict"):
            name = getattr(model, "type_name", type(model).__name__)
            if getattr(model, "isolated", False):
                model.close()
            raise ArtifactError(f"model.artifact: {name} has neither predict_proba nor predict")
        return model

    @property
    def model_isolated(self) -> bool:
        """Whether the model runs in the isolated process (a pickle artifact): no gradients, no object access."""
        return bool(getattr(self.model, "isolated", False))

    def close(self) -> None:
        """Stop the isolated model process, if one was started (it also stops when the context is collected)."""
        model = self.__dict__.get("model")
        if getattr(model, "isolated", False):
            model.close()

    def release(self) -> None:
        """Stop the model process and let go of the frames and the model once a stage (or registration) is done,
        and, when the frames were large, run a full garbage collection: a stage's own objects (GX, Evidently, ART)
        often hold the context or its frames in reference cycles that Python frees only at its next full
        collection, so a worker carried the last stage's frames (~1 GB per 10 M rows) into the next stage. A full
        collection costs ~0.35 s in a process with the stage libraries loaded (+2.5 s on a 1 M-row run), so
        contexts below COLLECT_ROWS rows, whose garbage is a few hundred MB at most, leave it to Python."""
        import gc

        rows = sum(len(df) for df in {id(df): df for df in self._frames.values()}.values())
        self.close()
        self._frames.clear()
        self.__dict__.pop("model", None)
        if rows >= COLLECT_ROWS:
            gc.collect()

    @property
    def features(self) -> list[str]:
        return list(self.spec.model.features or [])

    def feature_frame(self, dataset: str = "test") -> pd.DataFrame:
        """The model's input columns, refused up front when the model could not take them: a null where the
        model does not declare ``accepts_missing``, a stray string in a numeric column."""
        df = self.frame(dataset)
        self.require_columns(df, self.features, dataset=dataset, field_name="model.features")
        X = df[self.features]
        if dataset not in self._checked_features:
            self._check_feature_values(X, dataset)
            self._checked_features.add(dataset)
        return X

    def _numeric_reference(self, column: str, dataset: str) -> pd.Series:
        """What says whether a feature is numeric: the training data when the spec gives it, else the data itself."""
        if dataset != "train" and self.spec.data.train is not None:
            train = self.frame("train")
            if column in train.columns:
                return train[column]
        return self.frame(dataset)[column]

    def _check_feature_values(self, X: pd.DataFrame, dataset: str) -> None:
        for column in X.columns:
            col = X[column]
            typed = pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
            # A text column in one pass (pandas' hash table): its nulls (code -1) and its distinct values.
            codes, distinct = (None, None) if typed else pd.factorize(col)
            nulls = col.isna() if codes is None else pd.Series(codes < 0, index=col.index)
            if nulls.any() and not self.spec.model.accepts_missing:
                first = int(np.flatnonzero(nulls.to_numpy())[0])
                raise DataError(
                    f"model.features: column {short(column)} of data.{dataset} has {int(nulls.sum())} null value(s) "
                    f"(first at data row {first + 1}); the model is not declared to take missing values: fill them, "
                    "or set model.accepts_missing: true if the model handles them (e.g. HistGradientBoosting)"
                )
            if typed:
                continue
            if not _any_number(distinct):
                continue  # text only (a categorical): no stray string in a number column here
            ref = self._numeric_reference(column, dataset)
            if not _is_numeric(ref):
                continue
            parsed = pd.to_numeric(col, errors="coerce")
            bad = parsed.isna() & col.notna()
            if bad.any():
                first = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"model.features: column {short(column)} of data.{dataset} is numeric but has {int(bad.sum())} "
                    f"non-numeric value(s), e.g. {short(col.iloc[first], 40)} at data row {first + 1}; "
                    "only numbers are allowed in a numeric feature"
                )

    def positive_index(self) -> int:
        classes = list(getattr(self.model, "classes_", [0, 1]))
        pos = self.spec.data.positive_label
        for i, c in enumerate(classes):
            if c == pos or str(c) == str(pos):
                return i
        if classes == [0, 1]:
            return 1
        raise ArtifactError(f"data.positive_label: {pos!r} is not among the model's classes {classes}")

    def score_features(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class for feature rows, predicted in batches of :data:`PREDICT_BATCH`
        rows: a pipeline's intermediate arrays (e.g. one-hot columns, ~100 floats a row) then stay bounded
        instead of growing with the data (2.6 GB for 3.3 M rows).

        A large prediction runs on one native (OpenMP/BLAS) thread: a run's stage tasks execute side by side on a
        few cores, and OpenMP's spinning thread team then made e.g. gradient boosting 3x slower in wall time and
        CPU than one thread (333,000 Adult rows at load average 5: 12.9 s wall / 4.1 s CPU with the default
        team, 3.7 s / 1.5 s with one thread)."""
        if len(X) >= SINGLE_THREAD_ROWS:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1):
                return np.concatenate([self._score_batch(X.iloc[i:i + PREDICT_BATCH])
                                       for i in range(0, len(X), PREDICT_BATCH)])
        return self._score_batch(X)

    def _score_batch(self, X: pd.DataFrame) -> np.ndarray:
        model = self.model
        if hasattr(model, "predict_proba"):
            return np.asarray(model.predict_proba(X))[:, self.positive_index()].astype(float)
        pred = np.asarray(model.predict(X))
        pos = self.spec.data.positive_label
        return np.array([1.0 if (p == pos or str(p) == str(pos)) else 0.0 for p in pred])

    def predictions(self, dataset: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
        """(y_pred as 0/1, score of the positive class or None) for a dataset, from the model or the
        predictions column of a third-party audit."""
        df = self.frame(dataset)
        if self.spec.predictions is not None:
            p = self.spec.predictions
            self.require_columns(df, [p.column], dataset=dataset, field_name="predictions.column")
            col = df[p.column]
            if col.isna().any():
                raise DataError(f"predictions.column: {p.column!r} has {int(col.isna().sum())} null value(s) "
                                f"in data.{dataset}")
            positives = {str(v) for v in p.positive}
            # Compared as text, per distinct value (a million-row column has a handful of values).
            codes, uniques = pd.factorize(col)
            positive_values = np.array([str(u) in positives for u in uniques], dtype=bool)
            y_pred = positive_values[codes].astype(np.int64)
            if not positive_values.any() and not set(p.positive) & set(col.unique()):
                raise DataError(
                    f"predictions.positive: none of {p.positive} occurs in column {p.column!r} "
                    f"(values: {sorted(map(str, col.unique()))[:10]})"
                )
            score = None
            if p.score_column is not None:
                self.require_columns(df, [p.score_column], dataset=dataset, field_name="predictions.score_column")
                score = pd.to_numeric(df[p.score_column], errors="coerce").to_numpy(dtype=float)
                if np.isnan(score).any():
                    raise DataError(f"predictions.score_column: {p.score_column!r} has non-numeric or null values")
            return y_pred, score
        folder = self._cache_dir()
        entry = (self.cache or {}).get("predictions", {}).get(dataset)
        if folder is not None and entry is not None:
            hit = evalcache.read_predictions(folder / entry["file"], entry)
            if hit is not None:
                if entry.get("predict_seconds") is not None:
                    self.prediction_seconds.setdefault(dataset, float(entry["predict_seconds"]))
                return hit
        X = self.feature_frame(dataset)
        t0 = time.perf_counter()
        score = self.score_features(X)
        self.prediction_seconds[dataset] = time.perf_counter() - t0
        result = (score >= 0.5).astype(np.int64), score
        seconds = self.prediction_seconds[dataset]
        self._rewrite_cache("predictions", dataset,
                            lambda target: evalcache.store_predictions(result[0], score, seconds, target))
        return result

    # ---------------------------------------------------------------- groups
    def privileged_mask(self, attribute: str, dataset: str = "test") -> np.ndarray:
        """True for rows in the privileged group of ``attribute``."""
        df = self.frame(dataset)
        field_name = f"data.protected_attributes.{attribute}"
        self.require_columns(df, [attribute], dataset=dataset, field_name=field_name)
        col = df[attribute]
        spec = self.spec.data.protected_attributes[attribute].privileged
        if spec is None:
            raise DataError(f"{field_name}: compared per category or band (reference/bands), it has no privileged "
                            "group; use modelcert.fairness_groups for its groups")
        if isinstance(spec, GroupRange):
            num = pd.to_numeric(col, errors="coerce")
            if num.isna().all():
                raise DataError(f"{field_name}: a numeric range needs a numeric column, {attribute!r} is not numeric")
            mask = pd.Series(True, index=col.index)
            if spec.min is not None:
                mask &= num >= spec.min
            if spec.max is not None:
                mask &= num < spec.max
            return mask.fillna(False).to_numpy(dtype=bool)
        values = {str(v) for v in spec}
        return col.astype(str).isin(values).to_numpy(dtype=bool)

    def group_masks(self, attribute: str, dataset: str = "test") -> dict[str, np.ndarray]:
        """{"privileged": mask, "unprivileged": mask}; errors when either group is empty."""
        priv = self.privileged_mask(attribute, dataset)
        masks = {"privileged": priv, "unprivileged": ~priv}
        for name, mask in masks.items():
            if not mask.any():
                raise DataError(
                    f"data.protected_attributes.{attribute}: the {name} group is empty in data.{dataset} "
                    f"({len(mask)} rows); check the privileged values against the column's values"
                )
        return masks


def used_columns(spec: CertificationSpec) -> dict[str, str]:
    """Every column the spec uses, mapped to the first field that uses it."""
    used: dict[str, str] = {}

    def add(columns: object, field_name: str) -> None:
        for c in columns or []:  # type: ignore[union-attr]
            used.setdefault(str(c), field_name)

    d, checks = spec.data, spec.checks
    add(spec.model.features, "model.features")
    add([d.label], "data.label")
    add(d.protected_attributes, "data.protected_attributes")
    if spec.predictions is not None:
        add([spec.predictions.column], "predictions.column")
        add([spec.predictions.score_column] if spec.predictions.score_column else [], "predictions.score_column")
    add(spec.governance.pii_columns, "governance.pii_columns")
    add(checks.data_quality.value_sets, "checks.data_quality.value_sets")
    add(checks.data_quality.ranges, "checks.data_quality.ranges")
    add(checks.data_quality.dtypes, "checks.data_quality.dtypes")
    add(checks.drift.columns, "checks.drift.columns")
    add(checks.robustness.frozen_features, "checks.robustness.frozen_features")
    return used


def _any_number(distinct: Any) -> bool:
    """Whether any of a text column's distinct non-null values parses as a number."""
    return bool(pd.to_numeric(pd.Series(np.asarray(distinct, dtype=object), dtype=object),
                              errors="coerce").notna().any())


def _is_numeric(col: pd.Series) -> bool:
    """A numeric dtype, or text whose non-null values are almost all numbers (a numeric column with strays)."""
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return True
    # The share of rows, computed over the distinct values: parsing every row of a 30,000-row text column
    # (a categorical feature) costs ~50x more and gives the same number.
    counts = col.value_counts(dropna=True)
    if counts.empty:
        return False
    numeric = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce").notna().to_numpy()
    return float(counts.to_numpy()[numeric].sum() / counts.to_numpy().sum()) >= NUMERIC_SHARE
