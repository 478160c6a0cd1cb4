"""Each generated document's sha256, recorded with its run (table ``dossiers``, sealed into the audit chain).

Recording is idempotent: the same bytes again change nothing. Different bytes make a new version that names
the one it replaces, so nothing recorded is ever overwritten; once the run has a certificate the versions are
``frozen`` (a frozen dossier is regenerated from stored values only, so a change means a library changed its
output — the new version says which document it replaces).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from modelcert.db.models import Certificate, Dossier
from modelcert.db.session import reader, transaction


def record(engine: Engine, run_id: str, doc: Any) -> dict[str, Any]:
    """Store ``doc``'s sha256 for ``run_id`` unless its latest version has the same bytes."""
    with transaction(engine) as s:
        latest = s.execute(select(Dossier).where(Dossier.run_id == run_id, Dossier.kind == doc.kind,
                                                 Dossier.format == doc.format)
                           .order_by(Dossier.version.desc()).limit(1).with_for_update()).scalar_one_or_none()
        if latest is not None and latest.sha256 == doc.sha256:
            return as_dict(latest)
        cert = s.execute(select(Certificate.id).where(Certificate.run_id == run_id)).scalar_one_or_none()
        row = Dossier(run_id=run_id, kind=doc.kind, format=doc.format,
                      version=(latest.version + 1) if latest is not None else 1, sha256=doc.sha256,
                      bytes=len(doc.body), frozen=cert is not None, certificate_id=cert,
                      supersedes_id=latest.id if latest is not None else None)
        s.add(row)
        s.flush()
        return as_dict(row)


def history(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    with reader(engine) as s:
        rows = s.execute(select(Dossier).where(Dossier.run_id == run_id)
                         .order_by(Dossier.kind, Dossier.format, Dossier.version)).scalars().all()
        return [as_dict(r) for r in rows]


def as_dict(r: Dossier) -> dict[str, Any]:
    return {"kind": r.kind, "format": r.format, "version": r.version, "sha256": r.sha256, "bytes": r.bytes,
            "frozen": r.frozen, "certificate_id": r.certificate_id, "supersedes_id": r.supersedes_id}
