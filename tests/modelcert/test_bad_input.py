"""Bad input at the library layer: the model loader refuses what the spec does not vouch for, even if called
without the preflight. The CLI/database cases (spec, files, data, labels, groups, …) are the corpus in
test_bad_input_corpus.py."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelcert.context import EvalContext
from modelcert.errors import ArtifactError, SpecError
from modelcert.evidence import collect_evidence
from modelcert.spec import load_spec, parse_spec
from tests.conftest import write_synthetic


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "sex": ["m", "f"] * (n // 2), "y": rng.integers(0, 2, n)})


def _model() -> Any:
    from sklearn.linear_model import LogisticRegression

    df = _frame()
    return LogisticRegression().fit(df[["x"]], df["y"])


BASE = {"model": {"features": ["x"]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}}}


def _ctx(tmp_path: Path, frames: dict[str, pd.DataFrame], spec: dict[str, Any] = BASE, model: Any = None) -> EvalContext:
    path, _ = write_synthetic(tmp_path, frames, spec, model if model is not None else _model())
    parsed, text = load_spec(path)
    return EvalContext(spec=parsed, base_dir=path.parent, evidence=collect_evidence(parsed, text, path.parent))


def test_hash_mismatch_refuses_to_load(tmp_path: Path) -> None:
    path, spec = write_synthetic(tmp_path, {"test": _frame()}, BASE, _model())
    (tmp_path / "model.skops").write_bytes((tmp_path / "model.skops").read_bytes() + b"\0")
    parsed, text = load_spec(path)
    with pytest.raises(ArtifactError, match=r"model.sha256: the artifact .* hashes to [0-9a-f]{64}, but the spec declares"):
        collect_evidence(parsed, text, path.parent)
    ctx = EvalContext(spec=parsed, base_dir=path.parent)
    with pytest.raises(ArtifactError, match="refusing to load it"):
        _ = ctx.model


def test_hash_is_checked_before_unpickling(tmp_path: Path) -> None:
    """A joblib file that would run code on load is never loaded when its hash does not match."""
    import joblib

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> Any:
            return (marker.write_text, ("ran",))

    art = tmp_path / "evil.joblib"
    joblib.dump(Evil(), art)
    spec = parse_spec({"model": {"name": "m", "version": "1", "owner": "a", "artifact": "evil.joblib",
                                 "sha256": "0" * 64, "features": ["x"]},
                       "use_case": {"description": "d", "risk_tier": "high"},
                       "data": {"test": "t.csv", "label": "y", "protected_attributes": {"s": {"privileged": [1]}}}})
    ctx = EvalContext(spec=spec, base_dir=tmp_path)
    with pytest.raises(ArtifactError, match="model.sha256"):
        _ = ctx.model
    assert not marker.exists()


def test_corrupt_model_file(tmp_path: Path) -> None:
    junk = tmp_path / "model.skops"
    junk.write_bytes(b"this is not a zip archive")
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    spec = parse_spec({"model": {"name": "m", "version": "1", "owner": "a", "artifact": "model.skops",
                                 "sha256": digest, "features": ["x"]},
                       "use_case": {"description": "d", "risk_tier": "high"},
                       "data": {"test": "t.csv", "label": "y", "protected_attributes": {"s": {"privileged": [1]}}}})
    ctx = EvalContext(spec=spec, base_dir=tmp_path)
    with pytest.raises(ArtifactError, match=r"model.artifact: .* is not a readable skops model file"):
        _ = ctx.model


def test_untrusted_skops_type_is_refused(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    df = _frame()
    model = HistGradientBoostingClassifier(max_iter=5).fit(df[["x"]], df["y"])
    ctx = _ctx(tmp_path, {"test": df}, model=model)
    with pytest.raises(ArtifactError, match=r"model.trusted_types: .*TreePredictor"):
        _ = ctx.model


def test_cli_validate_prints_message_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main

    p = tmp_path / "s.yaml"
    p.write_text("model: {name: m, version: '1', owner: a}\nuse_case: {description: d, risk_tier: extreme}\n")
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "use_case.risk_tier: 'extreme' is not allowed" in err
    assert "data: required field is missing" in err
    assert "Traceback" not in err


def test_recertification_glob_match_symlinked_outside_is_refused(tmp_path: Path) -> None:
    """The data-root rule holds for the newest match of a recertification glob too (symlinks resolved)."""
    from modelcert.recertify import resolve_current_data

    spec_dir = tmp_path / "proj" / "specs"
    prod = tmp_path / "proj" / "prod"
    spec_dir.mkdir(parents=True)
    prod.mkdir()
    (prod / "batch_2026-01-01.csv").write_text("a\n1\n")
    assert resolve_current_data("../prod/batch_*.csv", spec_dir, "2026-01-02").name == "batch_2026-01-01.csv"
    secret = tmp_path / "elsewhere.csv"
    secret.write_text("a\n2\n")
    (prod / "batch_2026-01-02.csv").symlink_to(secret)  # newer by name (and mtime): the newest match
    with pytest.raises(SpecError, match=r"recertification.current_data: .*outside the allowed data roots"):
        resolve_current_data("../prod/batch_*.csv", spec_dir, "2026-01-02")
