"""Concurrency against a real PostgreSQL (issue 7, items 7b and 8): runs registering the same new model version at
once, a task and its overlapping retry (same run key, same stage), and the same spec run twice at once.

Each race starts its contenders at a barrier and is repeated, so a select-then-insert or delete-then-insert
window is hit rather than hoped for. Expectation everywhere: no constraint error, exactly one row per unique
key, exactly one result set per stage, each run's checks its own, and every run in a final state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select

from modelcert import audit, pipeline
from modelcert.db.models import CertificationRun, CheckResult, ModelVersion, StageResult
from modelcert.db.session import reader
from modelcert.stages import STAGE_NAMES
from modelcert.stages.base import Check, StageOutcome
from modelcert.thresholds import Threshold
from tests.conftest import write_synthetic
from tests.lifecycle import run_all

pytestmark = pytest.mark.store

FINAL = ("error", "rejected", "awaiting_signoff")


def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for i in 0..n-1 in n threads released together by a barrier; re-raise the first error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def main(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=main, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _tiny_spec(tmp_path: Path, version: str) -> Path:
    df = pd.DataFrame({"sex": ["m", "f"] * 20, "y": [0, 1, 1, 0] * 10, "pred": [1, 0] * 20})
    folder = tmp_path / version.replace(".", "_")
    folder.mkdir()
    path, _ = write_synthetic(folder, {"test": df}, {
        "model": {"name": "racer", "version": version},
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}},
    })
    return path


def _scalar(engine: Any, query: Any) -> Any:
    with reader(engine) as s:
        return s.execute(query).scalar_one()


def test_runs_registering_the_same_new_version_at_once(engine: Any, tmp_path: Path) -> None:
    """The probe's IntegrityError uq_model_versions_name_version: now every run is recorded, on one row."""
    for it in range(20):
        path = _tiny_spec(tmp_path, f"1.{it}")
        regs = race(4, lambda i, path=path, it=it: pipeline.register(engine, path, run_key=f"v{it}/run{i}", triggered_by="carol"))
        assert len({r.run_id for r in regs}) == 4 and {r.status for r in regs} == {"running"}
        versions = _scalar(engine, select(func.count()).select_from(ModelVersion)
                           .where(ModelVersion.name == "racer", ModelVersion.version == f"1.{it}"))
        assert versions == 1
        mv_ids = {_scalar(engine, select(CertificationRun.model_version_id).where(CertificationRun.id == r.run_id))
                  for r in regs}
        assert len(mv_ids) == 1 and None not in mv_ids


def test_the_same_run_key_registered_twice_at_once(engine: Any, tmp_path: Path) -> None:
    """A register task and its overlapping retry: one run row, both get it."""
    for it in range(15):
        path = _tiny_spec(tmp_path, f"2.{it}")
        regs = race(3, lambda i, path=path, it=it: pipeline.register(engine, path, run_key=f"same/{it}", triggered_by="carol"))
        assert len({r.run_id for r in regs}) == 1
        assert _scalar(engine, select(func.count()).select_from(CertificationRun)
                       .where(CertificationRun.run_key == f"same/{it}")) == 1
    with reader(engine) as s:
        assert audit.verify(s).ok


def _stage_outcome(stage: str, n_checks: int) -> StageOutcome:
    checks = tuple(Check.judged("score", 0.5 + k / 100, Threshold(min=0.1), subject=f"n{n_checks}/{k}")
                   for k in range(n_checks))
    return StageOutcome(stage=stage, status="passed", checks=checks)


def test_a_stage_and_its_overlapping_retry_store_one_result_set(engine: Any, spec_path: Path,
                                                                verdicts: dict[str, str]) -> None:
    """Two writers of the same run and stage at once (delete-then-insert): exactly one result row and only
    the checks of the writer whose result survived — never both sets, never a constraint error."""
    from datetime import datetime

    run_id = pipeline.register(engine, spec_path, run_key="retry/1", triggered_by="carol").run_id
    for it in range(25):
        sizes = (3 + it % 4, 7)
        race(2, lambda i, sizes=sizes: pipeline.save_stage(engine, run_id, _stage_outcome("fairness", sizes[i]),
                                                           started=datetime.now(UTC), duration_s=0.1, attempt=i + 1))
        with reader(engine) as s:
            rows = s.execute(select(StageResult).where(StageResult.run_id == run_id,
                                                       StageResult.stage == "fairness")).scalars().all()
            assert len(rows) == 1
            subjects = s.execute(select(CheckResult.subject).where(CheckResult.stage_result_id == rows[0].id)).scalars().all()
        kept = sizes[rows[0].attempt - 1]
        assert sorted(subjects) == sorted(f"n{kept}/{k}" for k in range(kept)), f"iteration {it}: mixed checks"
        assert _scalar(engine, select(func.count()).select_from(CheckResult)
                       .join(StageResult, CheckResult.stage_result_id == StageResult.id)
                       .where(StageResult.run_id == run_id)) == kept


def _result_sets(engine: Any, run_id: str) -> dict[str, list[int]]:
    """stage -> check positions of its (single) result set."""
    with reader(engine) as s:
        rows = s.execute(select(StageResult.stage, CheckResult.position)
                         .join(CheckResult, CheckResult.stage_result_id == StageResult.id, isouter=True)
                         .where(StageResult.run_id == run_id)).all()
        stages = s.execute(select(StageResult.stage).where(StageResult.run_id == run_id)).scalars().all()
    assert sorted(stages) == sorted(STAGE_NAMES), f"expected one result per stage, got {sorted(stages)}"
    out: dict[str, list[int]] = {name: [] for name in stages}
    for stage, pos in rows:
        if pos is not None:
            out[stage].append(pos)
    return {k: sorted(v) for k, v in out.items()}


def test_the_same_run_key_executed_twice_at_once(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> None:
    """A whole run and its overlapping retry (register, every stage, decide) at once: one run, one result set
    per stage, each with its checks exactly once, a final state, an intact audit chain."""
    for it in range(8):
        ids = race(2, lambda i, it=it: run_all(engine, spec_path, key=f"twice/{it}"))
        assert ids[0] == ids[1]
        assert _result_sets(engine, ids[0]) == {name: [0, 1] for name in STAGE_NAMES}
        assert _scalar(engine, select(CertificationRun.status).where(CertificationRun.id == ids[0])) == "awaiting_signoff"
    with reader(engine) as s:
        assert audit.verify(s).ok


# ------------------------------------------------------------------------------------------- real stages
def _real_spec(tmp_path: Path) -> Path:
    """A small synthetic problem with a real skops model, so the real stages run (GX, sklearn, ART, AIF360,
    compliance) in seconds; without current data drift records itself not applicable (Evidently's import alone
    would double the test's time)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)

    def frame(n: int) -> pd.DataFrame:
        x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
        return pd.DataFrame({"x1": x1, "x2": x2, "sex": rng.choice(["f", "m"], n),
                             "label": (x1 + x2 + rng.normal(0, 0.5, n) > 0).astype(int)})

    frames = {"train": frame(300), "test": frame(200)}
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frames["train"][["x1", "x2"]],
                                                                        frames["train"]["label"])
    path, _ = write_synthetic(tmp_path, frames, {
        "model": {"features": ["x1", "x2"]},
        "data": {"label": "label", "protected_attributes": {"sex": {"privileged": ["m"]}}},
        "checks": {"robustness": {"attacks": ["fgsm"], "eps": [0.05], "sample_size": 20},
                   "performance": {"accuracy": {"min": 0.5}}},
    }, model)
    return path


def _certify_in_process(db_url: str, spec: str, key: str, barrier: Any) -> tuple[str, str]:
    """One Airflow-like worker process: register, every stage, decide (top level: picklable for spawn)."""
    from modelcert import pipeline as pl
    from modelcert.db.session import get_engine
    from modelcert.stages import STAGE_NAMES as names

    engine = get_engine(db_url)
    barrier.wait(timeout=120)
    reg = pl.register(engine, spec, run_key=key, triggered_by="carol")
    for name in names:
        pl.run_stage(engine, reg.run_id, name)
    return reg.run_id, pl.decide(engine, reg.run_id)["status"]


@pytest.mark.slow
def test_the_same_spec_run_twice_at_once(db_url: str, engine: Any, tmp_path: Path) -> None:
    """Two worker processes at once with the real stages, one spec, two run keys (the overlapping retry of one
    run key is raced above with fast stages). No constraint error; two runs on one model version, each with one
    result set per stage and only its own checks, both in a final state."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spec = str(_real_spec(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            futures = [pool.submit(_certify_in_process, db_url, spec, key, barrier) for key in ("twice/a", "twice/b")]
            (a, status_a), (b, status_b) = [f.result(timeout=600) for f in futures]
    assert a != b and status_a == status_b and status_a in FINAL
    statuses = []
    for run_id in (a, b):
        sets = _result_sets(engine, run_id)
        assert all(positions == list(range(len(positions))) for positions in sets.values()), sets
        statuses.append(_scalar(engine, select(CertificationRun.status).where(CertificationRun.id == run_id)))
    # Two runs of one model version never both wait: the later decision supersedes the earlier waiting run.
    expected = ["awaiting_signoff", "superseded"] if status_a == "awaiting_signoff" else [status_a, status_a]
    assert sorted(statuses) == expected
    assert _result_sets(engine, a) == _result_sets(engine, b)  # same spec, same evidence: the same checks
    assert _scalar(engine, select(func.count()).select_from(CertificationRun)) == 2
    assert _scalar(engine, select(func.count()).select_from(ModelVersion)) == 1
    with reader(engine) as s:
        assert audit.verify(s).ok


def test_two_promotions_of_one_run_at_once_issue_one_certificate(engine: Any, spec_path: Path,
                                                                 verdicts: dict[str, str]) -> None:
    """A promote task and its overlapping retry (or the sign-off DAG and a manual promote): one certificate,
    both callers get it, no IntegrityError on uq_certificates_run_id."""
    from modelcert.db.models import Certificate
    from modelcert.governance import Identity, record_decision
    from tests.lifecycle import ROLES, digest_shown

    for it in range(8):
        run_id = run_all(engine, spec_path, key=f"promote/{it}")
        for name, role in (("bob", "model_validator"), ("dave", "risk_officer")):
            record_decision(engine, run_id, Identity(name, "t"), role=role, decision="approve", roles=ROLES,
                            evidence_digest=digest_shown(engine, run_id))
        certs = race(3, lambda i, run_id=run_id: pipeline.promote(engine, run_id))
        assert len({c["certificate_id"] for c in certs}) == 1
        assert _scalar(engine, select(func.count()).select_from(Certificate).where(Certificate.run_id == run_id)) == 1
