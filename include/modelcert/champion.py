"""The champion: the certified version a new version of the same model is compared with.

Found once, at registration, and stored in the run's evidence (covered by the evidence digest), so the
comparison a run shows and an approver signs is bound to that champion, whatever is certified later. The
champion's artifact and sha256 come from its certified run's stored (effective) spec; the explainability stage
loads it only after the bytes hash to that sha256 (``modelcert.context.load_model_file``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelcert.db.models import Certificate, CertificationRun, ModelVersion
from modelcert.errors import ModelcertError
from modelcert.spec import CertificationSpec, resolve_path


def champion_reference(s: Session, spec: CertificationSpec) -> dict[str, Any]:
    """The newest valid certificate of ``spec.model.name`` as a reference (empty when there is none, or for a
    predictions-only audit, which has no model to compare). A champion whose artifact can no longer be resolved
    is still recorded, with ``unavailable`` saying why: the stage then reports the comparison as not possible."""
    if spec.is_audit:
        return {}
    row = s.execute(
        select(Certificate, ModelVersion)
        .join(ModelVersion, Certificate.model_version_id == ModelVersion.id)
        .where(ModelVersion.name == spec.model.name, Certificate.status == "valid")
        .order_by(Certificate.issued_at.desc(), Certificate.id)
        .limit(1)).first()
    if row is None:
        return {}
    cert, mv = row
    run = s.get(CertificationRun, cert.run_id)
    if run is None:  # pragma: no cover - a certificate's run is a foreign key
        return {}
    model = (run.spec or {}).get("model") or {}
    ref: dict[str, Any] = {
        "certificate_id": cert.id, "run_id": run.id, "model": mv.name, "version": mv.version,
        "evidence_digest": run.evidence_digest, "valid_until": cert.valid_until.isoformat(),
        "sha256": model.get("sha256"), "format": model.get("format"), "features": list(model.get("features") or []),
        "trusted_types": list(model.get("trusted_types") or []),
    }
    if not model.get("artifact"):
        return {**ref, "artifact": None, "unavailable": "the champion was certified from predictions only"}
    try:
        ref["artifact"] = str(resolve_path(str(model["artifact"]), Path(run.spec_base_dir), field="model.artifact"))
    except ModelcertError as exc:
        return {**ref, "artifact": None, "unavailable": f"the champion's artifact cannot be resolved: {exc}"}
    return ref
