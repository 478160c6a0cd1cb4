"""Benchmark: the cost of sealing evidence at commit, and of ``audit verify`` over thousands of evidence rows.

Writes ``--runs`` runs, each with six stage results of ``--checks`` check rows, through the ORM (so every
transaction is sealed the way modelcert's writers are), then times ``audit.verify`` (chain walk, one pass per
evidence table, checkpoints).

    .venv/bin/python bench/bench_audit_verify.py --admin-url postgresql://postgres@127.0.0.1:5432/postgres \
        [--runs 500] [--checks 8] [--without-seal]

``--without-seal`` removes the sealing session events first: the difference is the cost of sealing (verify then
names every row as never sealed). A scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path


def _write(engine: object, runs: int, checks: int) -> float:
    from modelcert.db.models import (
        CertificationRun,
        CheckResult,
        ModelVersion,
        StageResult,
    )
    from modelcert.db.session import transaction

    start = time.perf_counter()
    with transaction(engine) as s:  # type: ignore[arg-type]
        mv = ModelVersion(name="bench", version="1", owner="bench", risk_tier="high")
        s.add(mv)
    now = datetime.now(UTC)
    for i in range(runs):
        with transaction(engine) as s:  # type: ignore[arg-type]
            run = CertificationRun(run_key=f"bench/{i}", model_version_id=mv.id, status="running", reasons=[],
                                   spec={"i": i}, spec_path="x", spec_base_dir="x", spec_text="x", evidence={},
                                   evidence_digest="0" * 64, submitter="bench")
            s.add(run)
            s.flush()
            for stage in ("data_quality", "performance", "robustness", "fairness", "drift", "compliance"):
                sr = StageResult(run_id=run.id, stage=stage, status="passed", summary={}, started_at=now,
                                 finished_at=now, duration_s=0.1)
                sr.checks = [CheckResult(position=j, name=f"c{j}", subject="all", value=j / 7, threshold={"min": 0.1},
                                         passed=True, required=True, message="", detail={}) for j in range(checks)]
                s.add(sr)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--admin-url", required=True)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--checks", type=int, default=8)
    ap.add_argument("--without-seal", action="store_true")
    args = ap.parse_args()

    import os

    from sqlalchemy import create_engine, text

    from modelcert import audit
    from modelcert.db import migrate
    from modelcert.db.session import get_engine, normalize_url, reader

    if args.without_seal:
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        from modelcert import seal

        for hook, fn in seal.HOOKS:
            event.remove(Session, hook, fn)
    os.environ["MODELCERT_AUDIT_CHECKPOINTS"] = str(Path(tempfile.mkdtemp()) / "checkpoints.jsonl")
    admin = create_engine(normalize_url(args.admin_url), isolation_level="AUTOCOMMIT")
    name = f"mc_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = normalize_url(args.admin_url).rsplit("/", 1)[0] + "/" + name
    try:
        migrate.upgrade(url)
        engine = get_engine(url)
        wrote = _write(engine, args.runs, args.checks)
        start = time.perf_counter()
        with reader(engine) as s:
            res = audit.verify(s)
        took = time.perf_counter() - start
        print(f"wrote {args.runs} runs ({args.runs * 6} stage results, {args.runs * 6 * args.checks} checks) "
              f"sealed in {wrote:.2f} s ({1000 * wrote / args.runs:.1f} ms per run transaction)")
        print(f"audit verify: ok={res.ok}, {res.rows} events, {res.sealed_rows} evidence rows in {took:.2f} s")
        engine.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
