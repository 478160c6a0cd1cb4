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
    for who, role in APPROVERS:
        record_decision(engine, reg.run_id, Identity(who, "demo:auto-approval"), role=role, decision="approve",
                        evidence_digest=shown, comment="fleet auto-approval")
    from modelcert.dossier.certified import record_certified

    cert = dict(pipeline.promote(engine, reg.run_id))
    return {**cert, "documents": record_certified(engine, reg.run_id)}
