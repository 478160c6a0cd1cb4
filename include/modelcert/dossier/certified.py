"""The documents every certified model gets when its certificate is issued: the model card (Markdown) and the
report (HTML), recorded frozen in ``dossiers``. Called by whoever issues a certificate (the Airflow ``promote``
task, ``modelcert promote``), after the certificate's transaction."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, select

from modelcert.db.models import Certificate
from modelcert.db.session import reader
from modelcert.dossier import modelcard, store
from modelcert.dossier.documents import gather, report_document

#: What every certified model gets when its certificate is issued: none of them needs WeasyPrint.
CERTIFIED = (("model-card", "md"), ("report", "html"))


def record_certified(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """After the certificate of ``run_id`` is issued (outside that transaction): generate the model card
    (Markdown) and the report (HTML) and record their sha256 in ``dossiers`` — frozen, bound to the certificate.

    Idempotent: a frozen document regenerates to the same bytes, and the same bytes are recorded once. Never
    raises: a document that cannot be made is reported in the returned list (``error``) and logged, so issuing
    the certificate — already committed — is not undone or failed by it. A run without a certificate gets
    nothing (``[]``)."""

    log = logging.getLogger(__name__)
    with reader(engine) as s:
        if s.execute(select(Certificate.id).where(Certificate.run_id == run_id)).scalar_one_or_none() is None:
            return []
    out: list[dict[str, Any]] = []
    try:
        rep = gather(engine, run_id)
    except Exception as exc:  # noqa: BLE001 - the certificate stands; the missing documents are reported
        log.warning("run %s: evidence for the certified documents not gathered: %s", run_id, exc)
        return [{"kind": k, "format": f, "error": f"{type(exc).__name__}: {str(exc)[:200]}"} for k, f in CERTIFIED]
    for kind, fmt in CERTIFIED:
        try:
            doc = (modelcard.model_card_document(engine, run_id, record=False, rep=rep) if kind == "model-card"
                   else report_document(engine, run_id, fmt, record=False, rep=rep))
            row = store.record(engine, run_id, doc)
            out.append({"kind": kind, "format": fmt, "sha256": row["sha256"], "version": row["version"],
                        "frozen": row["frozen"]})
        except Exception as exc:  # noqa: BLE001 - as above: reported, never fails the promote
            log.warning("run %s: %s (%s) not recorded: %s", run_id, kind, fmt, exc)
            out.append({"kind": kind, "format": fmt, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
    return out
