"""Shared fixtures: the demo build (real data, offline) and synthetic specs on tiny data."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "include" / "specs"

os.environ.setdefault("MODELCERT_QUIET", "1")
logging.getLogger("aif360").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def demo_build() -> Path:
    """Build the demo data and models once per session (a few seconds)."""
    from modelcert.demo.build import BUILD_DIR, build_all

    manifest = BUILD_DIR / "manifest.json"
    if not manifest.exists() or os.environ.get("MODELCERT_REBUILD_DEMO"):
        build_all(BUILD_DIR)
    return BUILD_DIR


@pytest.fixture
def demo_ctx(demo_build: Path) -> Callable[[str], Any]:
    """EvalContext for a shipped spec: demo_ctx("german_credit")."""
    from modelcert.context import EvalContext
    from modelcert.spec import load_spec

    def make(name: str) -> Any:
        path = SPECS / f"{name}.yaml"
        spec, _ = load_spec(path)
        return EvalContext(spec=spec, base_dir=path.parent)

    return make


def write_synthetic(tmp_path: Path, frames: dict[str, pd.DataFrame], spec: dict[str, Any],
                    model: Any | None = None) -> tuple[Path, dict[str, Any]]:
    """Write CSVs (and a skops model) into tmp_path, point the spec at them, return (spec path, spec dict).

    ``spec`` is a partial spec; data paths, the artifact and its sha256 are filled in here."""
    import yaml

    data = dict(spec.get("data", {}))
    for role, frame in frames.items():
        p = tmp_path / f"{role}.csv"
        frame.to_csv(p, index=False)
        data[role] = p.name
    full = {
        "model": {"name": "synthetic", "version": "1", "owner": "alice", **spec.get("model", {})},
        "use_case": spec.get("use_case", {"description": "unit test", "intended_use": "tests", "risk_tier": "high"}),
        "governance": spec.get("governance", {"data_retention_days": 30, "consent_basis": "test data"}),
        "data": data,
    }
    for key in ("predictions", "checks", "signoff", "certificate"):
        if key in spec:
            full[key] = spec[key]
    if model is not None:
        import skops.io as sio

        mp = tmp_path / "model.skops"
        sio.dump(model, mp)
        full["model"]["artifact"] = mp.name
        full["model"]["sha256"] = hashlib.sha256(mp.read_bytes()).hexdigest()
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(full, sort_keys=False))
    return path, full


@pytest.fixture
def synthetic_ctx(tmp_path: Path) -> Callable[..., Any]:
    """synthetic_ctx(frames={"train": df, "test": df}, spec={...}, model=fitted_or_None) -> EvalContext."""
    from modelcert.context import EvalContext
    from modelcert.spec import load_spec

    def make(frames: dict[str, pd.DataFrame], spec: dict[str, Any], model: Any | None = None) -> Any:
        path, _ = write_synthetic(tmp_path, frames, spec, model)
        parsed, _ = load_spec(path)
        return EvalContext(spec=parsed, base_dir=path.parent)

    return make
