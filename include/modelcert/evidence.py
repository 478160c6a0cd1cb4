"""Hashes of everything a certification judged: the spec text, the model artifact and each dataset.

The *evidence digest* is one sha256 over all of them. An approval names the digest it approves, so a
changed model, dataset or spec can never ride on an earlier approval.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelcert.errors import ArtifactError, DataError
from modelcert.spec import CertificationSpec, resolve_path

DATASETS = ("train", "test", "reference", "current")


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Evidence:
    spec_sha256: str
    #: name ("model", "train", "test", …) -> {"path": str, "sha256": str, "bytes": int}
    files: dict[str, dict[str, str | int]] = field(default_factory=dict)
    #: The risk policy the run is judged under, {"version", "sha256"} (covered by the digest: an approval binds it).
    policy: dict[str, str] = field(default_factory=dict)
    #: The certified version this run's model is compared with (``modelcert.champion``), fixed at registration:
    #: {"run_id", "certificate_id", "version", "artifact", "sha256", "format", "features", ...}. Covered by the
    #: digest, so an approval binds the comparison to that champion.
    champion: dict[str, Any] = field(default_factory=dict)
    #: The evaluation cache's manifest (``modelcert.evalcache``): sha256 of each cached file. Not part of the
    #: digest (it is derived from what the digest covers); it is what a cached file must hash to be used.
    cache: dict[str, object] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        payload: dict[str, object] = {"spec": self.spec_sha256,
                                      "files": {k: v["sha256"] for k, v in sorted(self.files.items())}}
        if self.policy:
            payload["policy"] = self.policy
        if self.champion:
            payload["champion"] = self.champion
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"spec_sha256": self.spec_sha256, "files": self.files, "digest": self.digest}
        if self.policy:
            out["policy"] = self.policy
        if self.champion:
            out["champion"] = self.champion
        if self.cache:
            out["cache"] = self.cache
        return out


def dataset_paths(spec: CertificationSpec, base_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name in DATASETS:
        value = getattr(spec.data, name)
        if value is not None:
            out[name] = resolve_path(value, base_dir)
    return out


def collect_evidence(spec: CertificationSpec, spec_text: str, base_dir: Path) -> Evidence:
    """Hash the spec, the artifact and every dataset; check the hashes the spec declares.

    The model's hash is checked here, before anything deserializes it (a pickle runs code on load)."""
    files: dict[str, dict[str, str | int]] = {}
    if spec.model.artifact is not None:
        path = resolve_path(spec.model.artifact, base_dir)
        if not path.is_file():
            raise ArtifactError(f"model.artifact: file {str(path)!r} does not exist")
        digest = sha256_file(path)
        if digest != spec.model.sha256:
            raise ArtifactError(
                f"model.sha256: the artifact {str(path)!r} hashes to {digest}, but the spec declares "
                f"{spec.model.sha256}; refusing to load it (the file changed or the spec is stale)"
            )
        files["model"] = {"path": str(path), "sha256": digest, "bytes": path.stat().st_size}
    if spec.benchmark is not None:
        path = resolve_path(spec.benchmark.artifact, base_dir, field="benchmark.artifact")
        if not path.is_file():
            raise ArtifactError(f"benchmark.artifact: file {str(path)!r} does not exist")
        digest = sha256_file(path)
        if digest != spec.benchmark.sha256:
            raise ArtifactError(f"benchmark.sha256: the artifact {str(path)!r} hashes to {digest}, but the spec "
                                f"declares {spec.benchmark.sha256}; refusing to load it")
        files["benchmark"] = {"path": str(path), "sha256": digest, "bytes": path.stat().st_size}
    for name, path in dataset_paths(spec, base_dir).items():
        if not path.is_file():
            raise DataError(f"data.{name}: file {str(path)!r} does not exist")
        digest = sha256_file(path)
        declared = spec.data.sha256.get(name)
        if declared is not None and declared != digest:
            raise DataError(f"data.sha256.{name}: {str(path)!r} hashes to {digest}, the spec declares {declared}")
        files[name] = {"path": str(path), "sha256": digest, "bytes": path.stat().st_size}
    return Evidence(spec_sha256=hashlib.sha256(spec_text.encode("utf-8")).hexdigest(), files=files)
