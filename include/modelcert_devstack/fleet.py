"""A fleet of certified model versions for recertification at scale: copies of the shipped German credit spec
as versions of their own, each certified through the real pipeline (stages, gate, two demo sign-offs, promote)
in this process, so the ``recertify_models`` DAG finds one valid certificate per version.

Used by ``bench/bench_recertify.py`` and the Celery e2e test. The copies' files are laid out as in the
repository (same relative paths, same bytes, so the same hashes) under a folder of their own: a spec may only
read files inside its parent folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

SPECS = Path(__file__).resolve().parents[1] / "specs"
#: The shipped spec the fleet copies.
SOURCE_SPEC = SPECS / "german_credit.yaml"
#: Who submits the fleet's runs, and who signs them off (the demo's approvers, recorded as such).
SUBMITTER = "alice"
APPROVERS = (("bob", "model_validator"), ("dave", "risk_officer"))
#: Who accepts open findings for each role the policy names (the demo's users).
ACCEPTORS = {"risk_officer": "dave", "model_validator": "bob"}


def accept_blocking(engine: Any, run_id: str, shown: str, *, via: str = "demo:auto-acceptance"
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """Accept every open finding that blocks sign-off of ``run_id`` (e.g. an inconclusive fairness check on German
    credit's ~300 test rows under the high tier's accept_risk), each by the demo holder of the role the policy
    names, for the digest ``shown``. Returns (accepted findings, roles the demo has nobody for)."""
    from modelcert import findings
    from modelcert.db.session import reader
    from modelcert.governance import Identity, accept_findings

    with reader(engine) as s:
        blocking = findings.open_blocking(s, run_id)
    accepted: list[dict[str, Any]] = []
    missing: list[str] = []
    for role in sorted({f.accept_role for f in blocking}):
        who = ACCEPTORS.get(role)
        if who is None:
            missing.append(role)
            continue
        out = accept_findings(engine, run_id, Identity(who, via), role=role, evidence_digest=shown,
                              finding_ids=[f.id for f in blocking if f.accept_role == role],
                              reason="demo auto-acceptance: inconclusive on the demo's small test set; "
                                     "in production, more data or a written risk rationale")
        accepted += list(out["accepted"])
    return accepted, missing


def write_versions(root: Path, versions: list[str], *, robustness: bool = True) -> list[Path]:
    """One spec per version under ``root/specs`` (german_credit.yaml with ``model.version`` replaced), its
    artifact, data and production batches copied to ``root`` with the repository's relative layout.

    ``robustness=False`` drops the robustness checks (the slowest stage; recertification does not run it) where
    the risk policy allows it — callers that only need certificates to recertify use it to save time."""
    from modelcert.demo.build import BUILD_DIR, build_all
    from modelcert.demo.production import build_production

    if not (BUILD_DIR / "manifest.json").exists():
        build_all(BUILD_DIR)
    spec = yaml.safe_load(SOURCE_SPEC.read_text())
    if not robustness:
        spec["checks"].pop("robustness", None)
    out_specs = root / "specs"
    out_specs.mkdir(parents=True, exist_ok=True)
    for rel in [spec["model"]["artifact"], *(spec["data"][k] for k in ("train", "test", "current"))]:
        dst = (out_specs / rel).resolve()
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile((SPECS / rel).resolve(), dst)
    current = spec.get("recertification", {}).get("current_data")
    if current:  # today's production batches, where the copies' recertification.current_data looks
        build_production((out_specs / current).resolve().parent)
    paths = []
    for version in versions:
        spec["model"]["version"] = version
        path = out_specs / f"german_credit_{version}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        paths.append(path)
    return paths


def certify(engine: Any, spec_path: Path, *, key: str) -> dict[str, Any]:
    """Certify one spec in this process: register, the six stages, the gate, two sign-offs by the demo approvers
    (``demo:auto-approval``) on the digest the run's report shows, promote. Returns the promotion's summary (with
    ``certificate_id``); raises RuntimeError naming the spec and its reasons when the gate does not ask for
    sign-off."""
    from modelcert import pipeline
    from modelcert.governance import Identity, record_decision
    from modelcert.report import run_report
    from modelcert.stages import STAGE_NAMES

    reg = pipeline.register(engine, spec_path, run_key=key, triggered_by=SUBMITTER)
    for name in STAGE_NAMES:
        pipeline.run_stage(engine, reg.run_id, name)
    decision = pipeline.decide(engine, reg.run_id)
    if decision["status"] != "awaiting_signoff":
        raise RuntimeError(f"{spec_path.name}: the gate said {decision['status']}, not awaiting_signoff: "
                           f"{decision.get('reasons')}")
    shown = str(run_report(engine, reg.run_id)["evidence_digest"])
    accept_blocking(engine, reg.run_id, shown)
    for who, role in APPROVERS:
        record_decision(engine, reg.run_id, Identity(who, "demo:auto-approval"), role=role, decision="approve",
                        evidence_digest=shown, comment="fleet auto-approval")
    from modelcert.dossier.certified import record_certified

    cert = dict(pipeline.promote(engine, reg.run_id))
    return {**cert, "documents": record_certified(engine, reg.run_id)}
