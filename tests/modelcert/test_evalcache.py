"""The evaluation cache (read once, predict once) and Parquet inputs: register writes the datasets and the test
predictions as Parquet keyed by the evidence digest, the stages use them, a tampered or missing cache file is never
used (the stage reads the verified source and rewrites it), and the same data as CSV or as Parquet gives the same
evidence."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import select

from modelcert import evalcache, pipeline
from modelcert.context import EvalContext
from modelcert.db.models import CertificationRun, CheckResult, StageResult
from modelcert.db.session import reader
from modelcert.preflight import preflight
from modelcert.stages import get_stage

REPO = Path(__file__).resolve().parents[2]
#: Wall-clock measurements: they differ on every run and are not data evidence.
TIMED = {"latency_p50_ms", "latency_p95_ms", "batch_throughput_rows_per_s"}


@pytest.fixture
def german(tmp_path: Path, demo_build: Path) -> Path:
    """The german_credit demo spec with its data and model copied under tmp_path (so tests may modify them)."""
    text = (REPO / "include" / "specs" / "german_credit.yaml").read_text()
    (tmp_path / "build").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "specs").mkdir()
    for name in ("train", "test", "current"):
        shutil.copy(demo_build / f"german_credit_{name}.csv", tmp_path / "build")
    shutil.copy(REPO / "include" / "demo" / "models" / "german_credit.skops", tmp_path / "models")
    text = text.replace("../demo/build/", "../build/").replace("../demo/models/", "../models/")
    path = tmp_path / "specs" / "german_credit.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("MODELCERT_CACHE_DIR", str(d))
    return d


def stored_checks(engine: Any, run_id: str, stage: str) -> list[tuple[Any, ...]]:
    with reader(engine) as s:
        sr = s.execute(select(StageResult).where(StageResult.run_id == run_id, StageResult.stage == stage)).scalar_one()
        rows = s.execute(select(CheckResult).where(CheckResult.stage_result_id == sr.id)
                         .order_by(CheckResult.position)).scalars()
        return sorted(((c.name, c.subject, None if c.name in TIMED else c.value, c.passed, c.threshold) for c in rows),
                      key=repr)


def direct_checks(spec_path: Path, stage: str) -> list[tuple[Any, ...]]:
    """The stage on a context without any cache: the independent reference."""
    pf = preflight(spec_path)
    ctx = EvalContext(spec=pf.spec, base_dir=spec_path.parent, evidence=pf.evidence)
    try:
        out = get_stage(stage).run(ctx)
    finally:
        ctx.close()
    # sorted: the stored spec (JSONB) may list protected attributes in another order than the YAML
    return sorted(((c.name, c.subject or "", None if c.name in TIMED else c.value, c.passed, c.threshold)
                   for c in out.checks), key=repr)


def manifest(engine: Any, run_id: str) -> dict[str, Any]:
    with reader(engine) as s:
        return dict(s.get(CertificationRun, run_id).evidence["cache"])


def register(engine: Any, spec_path: Path) -> pipeline.Registered:
    return pipeline.register(engine, spec_path, run_key=f"test/{uuid.uuid4()}")


@pytest.mark.store
def test_register_writes_the_cache_and_records_its_hashes(engine: Any, german: Path, cache_dir: Path) -> None:
    reg = register(engine, german)
    m = manifest(engine, reg.run_id)
    folder = cache_dir / reg.evidence_digest
    assert set(m["datasets"]) == {"train", "test", "current"} and set(m["predictions"]) == {"test"}
    for entry in [*m["datasets"].values(), *m["predictions"].values()]:
        assert evalcache.file_sha256(folder / entry["file"]) == entry["sha256"]
    test = pd.read_csv(german.parent.parent / "build" / "german_credit_test.csv")
    cached = pq.read_table(folder / "test.parquet").to_pandas()
    pd.testing.assert_frame_equal(cached, test)  # the same frame, dtypes included
    preds = pq.read_table(folder / "predictions-test.parquet").to_pandas()
    assert len(preds) == len(test) == m["predictions"]["test"]["rows"]
    assert m["predictions"]["test"]["predict_seconds"] > 0
    # idempotent: registering the same evidence again writes the same bytes
    again = manifest(engine, register(engine, german).run_id)
    assert {k: v["sha256"] for k, v in again["datasets"].items()} == {k: v["sha256"] for k, v in m["datasets"].items()}
    assert again["predictions"]["test"]["sha256"] == m["predictions"]["test"]["sha256"]


@pytest.mark.store
def test_a_benchmark_artifact_is_hashed_but_not_cached_as_a_table(engine: Any, german: Path, cache_dir: Path) -> None:
    """The evidence names a benchmark model beside the datasets; the cache holds tables only (regression: register
    failed with "data.benchmark: no benchmark dataset" once the explainability stage's benchmark existed)."""
    import yaml

    spec = yaml.safe_load(german.read_text())
    model = german.parent.parent / "models" / "german_credit.skops"
    spec["benchmark"] = {"artifact": "../models/german_credit.skops",
                         "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    german.write_text(yaml.safe_dump(spec, sort_keys=False))
    reg = register(engine, german)
    with reader(engine) as s:
        files = s.get(CertificationRun, reg.run_id).evidence["files"]
    assert "benchmark" in files  # covered by the digest
    assert set(manifest(engine, reg.run_id)["datasets"]) == {"train", "test", "current"}


@pytest.mark.store
def test_stages_read_the_cache_not_the_sources(engine: Any, german: Path, cache_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    reg = register(engine, german)
    import modelcert.context as context

    def no_source(*a: Any, **k: Any) -> Any:
        raise AssertionError("a source file was read although the cache holds it")

    def no_prediction(*a: Any, **k: Any) -> Any:
        raise AssertionError("the test set was predicted again although the cache holds the predictions")

    monkeypatch.setattr(context, "read_table", no_source)
    monkeypatch.setattr(context, "sha256_file", no_source)
    monkeypatch.setattr(EvalContext, "score_features", no_prediction)
    for stage in ("data_quality", "fairness", "drift"):
        assert pipeline.run_stage(engine, reg.run_id, stage)["status"] in ("passed", "failed")
    monkeypatch.undo()
    for stage in ("data_quality", "fairness", "drift", "performance"):
        pipeline.run_stage(engine, reg.run_id, stage)
        assert stored_checks(engine, reg.run_id, stage) == direct_checks(german, stage), stage


@pytest.mark.store
def test_a_tampered_cache_is_not_used_and_is_rewritten(engine: Any, german: Path, cache_dir: Path) -> None:
    reg = register(engine, german)
    m = manifest(engine, reg.run_id)
    folder = cache_dir / reg.evidence_digest
    # Flip every label in the cached test set and every cached prediction: valid Parquet, wrong evidence.
    test = pq.read_table(folder / "test.parquet").to_pandas()
    test["credit_risk"] = 1 - test["credit_risk"]
    test.to_parquet(folder / "test.parquet")
    preds = pq.read_table(folder / "predictions-test.parquet").to_pandas()
    preds["y_pred"] = 1 - preds["y_pred"]
    preds["score"] = 1 - preds["score"]
    preds.to_parquet(folder / "predictions-test.parquet")
    assert evalcache.file_sha256(folder / "test.parquet") != m["datasets"]["test"]["sha256"]
    for stage in ("performance", "fairness"):
        pipeline.run_stage(engine, reg.run_id, stage)
        assert stored_checks(engine, reg.run_id, stage) == direct_checks(german, stage), stage
    # rewritten from the verified source: the registered bytes again
    assert evalcache.file_sha256(folder / "test.parquet") == m["datasets"]["test"]["sha256"]
    assert evalcache.file_sha256(folder / "predictions-test.parquet") == m["predictions"]["test"]["sha256"]


@pytest.mark.store
def test_a_worker_without_the_cache_recomputes_it(engine: Any, german: Path, cache_dir: Path) -> None:
    reg = register(engine, german)
    m = manifest(engine, reg.run_id)
    shutil.rmtree(cache_dir)  # another Celery worker: same sources, no shared disk
    pipeline.run_stage(engine, reg.run_id, "performance")
    assert stored_checks(engine, reg.run_id, "performance") == direct_checks(german, "performance")
    folder = cache_dir / reg.evidence_digest
    assert evalcache.file_sha256(folder / "test.parquet") == m["datasets"]["test"]["sha256"]
    assert evalcache.file_sha256(folder / "predictions-test.parquet") == m["predictions"]["test"]["sha256"]


@pytest.mark.store
def test_a_changed_source_is_still_refused_when_the_cache_is_gone(engine: Any, german: Path, cache_dir: Path) -> None:
    reg = register(engine, german)
    shutil.rmtree(cache_dir)
    src = german.parent.parent / "build" / "german_credit_test.csv"
    src.write_text(src.read_text().replace("male", "female", 1))
    out = pipeline.run_stage(engine, reg.run_id, "fairness")
    assert out["status"] == "error" and "changed since the run was registered" in out["reason"]


def _as_parquet(spec_path: Path) -> Path:
    """The same spec reading the same data from Parquet files."""
    build = spec_path.parent.parent / "build"
    for name in ("train", "test", "current"):
        pd.read_csv(build / f"german_credit_{name}.csv").to_parquet(build / f"german_credit_{name}.parquet")
    spec = yaml.safe_load(spec_path.read_text())
    for name in ("train", "test", "current"):
        spec["data"][name] = spec["data"][name].replace(".csv", ".parquet")
    spec["data"].pop("sha256", None)
    out = spec_path.with_name("german_credit_parquet.yaml")
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["data_quality", "performance", "fairness", "robustness", "drift", "compliance"])
def test_parquet_and_csv_inputs_give_the_same_evidence(german: Path, stage: str) -> None:
    csv = yaml.safe_load(german.read_text())
    csv["data"].pop("sha256", None)  # the Parquet twin cannot declare the CSV's hashes; keep both specs alike
    german.write_text(yaml.safe_dump(csv, sort_keys=False))
    parquet = _as_parquet(german)
    assert direct_checks(parquet, stage) == direct_checks(german, stage)


def test_parquet_inputs_are_read_pruned_and_undeclared_columns_still_refused(german: Path) -> None:
    from modelcert.errors import DataError

    parquet = _as_parquet(german)
    test = parquet.parent.parent / "build" / "german_credit_test.parquet"
    df = pd.read_parquet(test)
    df["secret_notes"] = "x"
    df.to_parquet(test)
    with pytest.raises(DataError, match=r"data\.test has 1 column\(s\) the spec neither uses nor declares: "
                                        r"'secret_notes'"):
        preflight(parquet)
    spec = yaml.safe_load(parquet.read_text())
    spec["data"]["extra_columns"] = ["secret_notes"]
    parquet.write_text(yaml.safe_dump(spec, sort_keys=False))
    pf = preflight(parquet)
    assert "secret_notes" in pf.context.frame("test").columns  # declared: read
    ctx = EvalContext(spec=pf.spec, base_dir=parquet.parent)
    assert ctx.source_columns("test")[-1] == "secret_notes"
    assert np.array_equal(ctx.frame("test")["credit_risk"].to_numpy(), df["credit_risk"].to_numpy())


@pytest.mark.parametrize("later", [
    ["x", "y", None],          # text throughout (read compactly)
    ["12", "13", "14"],        # text first, numbers later: pandas may convert chunk by chunk -> plain read
    ["True", "False", "True"],  # booleans later -> plain read
])
def test_compact_csv_reading_gives_exactly_what_read_csv_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               later: list[Any]) -> None:
    import modelcert.context as context

    monkeypatch.setattr(context, "CSV_SNIFF_ROWS", 50)
    rng = np.random.default_rng(0)
    n = 300_000  # several of pandas' internal parser chunks
    col = rng.choice(["a", "b", None], n).astype(object)
    col[-3:] = later
    df = pd.DataFrame({"t": col, "x": rng.integers(0, 5, n), "f": rng.random(n).round(3),
                       "s": rng.choice(["Male", "Female"], n)})
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    pd.testing.assert_frame_equal(context.read_csv_compact(path), pd.read_csv(path), check_exact=True)
    small = tmp_path / "small.csv"
    df.head(20).to_csv(small, index=False)
    pd.testing.assert_frame_equal(context.read_csv_compact(small), pd.read_csv(small), check_exact=True)


def _same_frame(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal values and dtypes, and the same Python type in every cell (None stays None, not NaN)."""
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    for c in expected.columns:
        assert got[c].map(type).tolist() == expected[c].map(type).tolist(), c


def test_cached_and_parquet_frames_are_exactly_what_to_pandas_gives(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Text columns are decoded as dictionaries and turned back into object columns: the same frame as a plain
    ``read_table().to_pandas()`` (nulls, numbers and booleans as text, an all-null column, pandas string and
    categorical dtypes), also written in several row groups and read pruned to some columns."""
    monkeypatch.setattr(evalcache, "WRITE_CHUNK_ROWS", 70_000)
    rng = np.random.default_rng(0)
    n = 200_000
    df = pd.DataFrame({"a": rng.integers(0, 9, n), "t": rng.choice(["x", "yy", None], n),
                       "u": rng.choice(["1", "2.5", "True", ""], n), "n": [None] * n,
                       "s": pd.array(rng.choice(["p", "q"], n), dtype="string"),
                       "c": pd.Categorical(rng.choice(["k", "l"], n)), "f": rng.random(n), "b": rng.random(n) < .5,
                       "nan": rng.choice(["z", np.nan], n)})
    entry = evalcache.write_frame(df, tmp_path / "a.parquet")
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 3
    monkeypatch.setattr(evalcache, "WRITE_CHUNK_ROWS", 10 * n)
    assert evalcache.write_frame(df, tmp_path / "whole.parquet")["sha256"] != entry["sha256"]  # one row group
    plain = pq.read_table(tmp_path / "a.parquet").to_pandas()
    _same_frame(evalcache.read_frame(tmp_path / "a.parquet", entry), plain)
    _same_frame(plain, pq.read_table(tmp_path / "whole.parquet").to_pandas())
    df.to_parquet(tmp_path / "b.parquet")  # pandas' writer: a RangeIndex is metadata, not a column
    for cols in (None, ["t", "s", "a", "u", "nan"]):
        _same_frame(evalcache.read_parquet_frame(tmp_path / "b.parquet", cols),
                    pq.read_table(tmp_path / "b.parquet", columns=cols).to_pandas())
