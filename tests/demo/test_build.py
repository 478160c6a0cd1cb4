"""The demo's given models are committed bytes, never re-trained at set-up: a spec hash must not depend on the
float bits of a training run (BLAS kernels differ between CPUs; a German LR retrained on an AVX-512 machine hashed
differently and every German run ended in `error`)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modelcert.demo import build

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO / "include" / "specs").glob("*.yaml"))


def _artifact_specs() -> list[tuple[Path, Path, str]]:
    out = []
    for spec in SPECS:
        model = yaml.safe_load(spec.read_text(encoding="utf-8"))["model"]
        if model.get("artifact"):
            out.append((spec, (spec.parent / model["artifact"]).resolve(), model["sha256"]))
    return out


def test_every_shipped_model_spec_pins_an_artifact() -> None:
    pinned = _artifact_specs()
    assert {p.name for _, p, _ in pinned} == {"german_credit.skops", "adult_income.skops"}
    assert all(p.parent == build.MODELS_DIR for _, p, _ in pinned)


@pytest.mark.parametrize("spec,artifact,declared", _artifact_specs(), ids=lambda v: getattr(v, "name", ""))
def test_spec_hash_is_the_hash_of_bytes_committed_to_git(spec: Path, artifact: Path, declared: str) -> None:
    """The bytes git holds at HEAD (what any clone gets, on any CPU) hash to what the spec declares; so do the
    working-tree bytes. Nothing here trains or trusts the local CPU."""
    rel = artifact.relative_to(REPO).as_posix()
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout (e.g. an sdist): only the working-tree bytes can be checked")
    blob = subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:{rel}"], capture_output=True, check=False)
    assert blob.returncode == 0, f"{rel} is not committed: {blob.stderr.decode(errors='replace').strip()}"
    assert hashlib.sha256(blob.stdout).hexdigest() == declared, f"{spec.name}: committed {rel} does not match model.sha256"
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == declared


def test_build_writes_data_only_and_never_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.pipeline import Pipeline

    def no_training(*_a: object, **_k: object) -> None:
        raise AssertionError("the demo build must not train a model")

    monkeypatch.setattr(Pipeline, "fit", no_training)
    before = {p.name: p.read_bytes() for p in build.MODELS_DIR.glob("*.skops")}
    built = build.build_all(tmp_path)
    assert set(built) == {"german_credit", "adult_income", "compas"}
    assert not list(tmp_path.glob("*.skops"))
    assert {p.name: p.read_bytes() for p in build.MODELS_DIR.glob("*.skops")} == before
    # The data is integer/string only, so it is the same everywhere: the German test split has its 200 rows.
    assert sum(1 for _ in (tmp_path / "german_credit_test.csv").open()) == 201


def test_restamp_changes_only_the_sha256_line_of_specs_naming_the_artifact(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "include" / "specs", specs)
    models = tmp_path / "demo" / "models"
    shutil.copytree(build.MODELS_DIR, models)
    new = "ab" * 32
    changed = build.restamp_specs(models / "german_credit.skops", new, specs)
    assert sorted(p.name for p in changed) == ["german_credit.yaml", "german_credit_v2.yaml"]
    for p in changed:
        old_lines = (REPO / "include" / "specs" / p.name).read_text().splitlines()
        new_lines = p.read_text().splitlines()
        diff = [(a, b) for a, b in zip(old_lines, new_lines, strict=False) if a != b]  # lengths asserted next
        assert len(old_lines) == len(new_lines) and len(diff) == 1 and diff[0][1].strip() == f"sha256: {new}"
    assert (specs / "adult_income.yaml").read_text() == (REPO / "include" / "specs" / "adult_income.yaml").read_text()
    assert build.restamp_specs(models / "german_credit.skops", new, specs) == []  # idempotent


@pytest.mark.slow
def test_retrain_regenerates_and_restamps(tmp_path: Path) -> None:
    """The maintainer's step: the re-trained model's hash (whatever this CPU makes of it) lands in the specs."""
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "include" / "specs", specs)
    models = tmp_path / "demo" / "models"
    out = build.retrain(models, specs, only=["german_credit"])
    digest, _ = out["german_credit"]
    assert hashlib.sha256((models / "german_credit.skops").read_bytes()).hexdigest() == digest
    for name in ("german_credit.yaml", "german_credit_v2.yaml"):
        assert yaml.safe_load((specs / name).read_text())["model"]["sha256"] == digest
