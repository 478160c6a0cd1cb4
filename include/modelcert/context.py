"""What a stage sees: the validated spec, its datasets, the model (loaded only after its hash matched) and
helpers that turn labels, predictions and protected groups into arrays with clear errors."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelcert.errors import ArtifactError, DataError
from modelcert.evidence import Evidence, dataset_paths, sha256_file
from modelcert.spec import CertificationSpec, GroupRange, resolve_path


def read_table(path: Path, *, field_name: str) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes a field-named DataError
        raise DataError(f"{field_name}: cannot read {str(path)!r} as {suffix.lstrip('.')}: {exc}") from exc
    raise DataError(f"{field_name}: {str(path)!r} has suffix {suffix!r}; allowed: .csv, .parquet")


def load_model_file(path: Path, *, fmt: str, expected_sha256: str, trusted_types: list[str]) -> Any:
    """Deserialize a model, but only after its sha256 equals the one the spec declares.

    skops refuses types it does not know unless the spec vouches for them; joblib (pickle) runs arbitrary
    code on load, which is why the hash comes first."""
    if not path.is_file():
        raise ArtifactError(f"model.artifact: file {str(path)!r} does not exist")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ArtifactError(
            f"model.sha256: the artifact {str(path)!r} hashes to {actual}, but the spec declares {expected_sha256}; "
            "refusing to load it"
        )
    try:
        if fmt == "skops":
            import skops.io as sio

            untrusted = sio.get_untrusted_types(file=path)
            refused = sorted(set(untrusted) - set(trusted_types))
            if refused:
                raise ArtifactError(
                    f"model.trusted_types: the skops file {str(path)!r} contains types skops does not trust by default: "
                    f"{refused}; list them under model.trusted_types if the owner vouches for them"
                )
            return sio.load(path, trusted=list(untrusted))
        import joblib

        return joblib.load(path)
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, TypeError, KeyError, OSError, io.UnsupportedOperation) as exc:
        raise ArtifactError(f"model.artifact: {str(path)!r} is not a readable {fmt} model file: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        raise ArtifactError(f"model.artifact: loading {str(path)!r} as {fmt} failed: {type(exc).__name__}: {exc}") from exc


@dataclass
class EvalContext:
    """Inputs of one certification run, loaded lazily so a stage pays only for what it uses."""

    spec: CertificationSpec
    base_dir: Path
    evidence: Evidence | None = None
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- data
    def has(self, dataset: str) -> bool:
        return getattr(self.spec.data, dataset) is not None or (dataset == "reference" and self.spec.data.train is not None)

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
            df = read_table(path, field_name=f"data.{name}")
            if df.empty:
                raise DataError(f"data.{name}: {str(path)!r} has no rows")
            self._frames[dataset] = df
        return self._frames[dataset]

    def require_columns(self, df: pd.DataFrame, columns: list[str], *, dataset: str, field_name: str) -> None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(
                f"{field_name}: column(s) {missing} missing from data.{dataset} "
                f"(it has {len(df.columns)} columns: {', '.join(map(str, list(df.columns)[:25]))}"
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
            shown = values[:10]
            raise DataError(
                f"data.label: column {label!r} of data.{dataset} is not binary: {len(values)} distinct values "
                f"{shown}{' …' if len(values) > 10 else ''}; a binary classification label has exactly two"
            )
        pos = self.spec.data.positive_label
        matches = col == pos
        if not matches.any() and str(pos) in {str(v) for v in values}:
            matches = col.astype(str) == str(pos)
        if not matches.any():
            raise DataError(
                f"data.positive_label: {pos!r} does not occur in column {label!r} of data.{dataset} (values: {values})"
            )
        return matches.to_numpy(dtype=np.int64)

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
        model = load_model_file(path, fmt=m.format or "skops", expected_sha256=expected, trusted_types=m.trusted_types)
        if not hasattr(model, "predict_proba") and not hasattr(model, "predict"):
            raise ArtifactError(f"model.artifact: {type(model).__name__} has neither predict_proba nor predict")
        return model

    @property
    def features(self) -> list[str]:
        return list(self.spec.model.features or [])

    def feature_frame(self, dataset: str = "test") -> pd.DataFrame:
        df = self.frame(dataset)
        self.require_columns(df, self.features, dataset=dataset, field_name="model.features")
        return df[self.features]

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
        """Probability of the positive class for feature rows."""
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
                raise DataError(f"predictions.column: {p.column!r} has {int(col.isna().sum())} null value(s) in data.{dataset}")
            positives = {str(v) for v in p.positive}
            y_pred = col.astype(str).isin(positives).to_numpy(dtype=np.int64)
            if not col.astype(str).isin(positives).any() and not set(p.positive) & set(col.unique()):
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
        score = self.score_features(self.feature_frame(dataset))
        return (score >= 0.5).astype(np.int64), score

    # ---------------------------------------------------------------- groups
    def privileged_mask(self, attribute: str, dataset: str = "test") -> np.ndarray:
        """True for rows in the privileged group of ``attribute``."""
        df = self.frame(dataset)
        field_name = f"data.protected_attributes.{attribute}"
        self.require_columns(df, [attribute], dataset=dataset, field_name=field_name)
        col = df[attribute]
        spec = self.spec.data.protected_attributes[attribute].privileged
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
