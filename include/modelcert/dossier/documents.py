"""Generated documents: a run's evidence gathered once, rendered as the report (html | pdf | json), with
its sha256 recorded (``store``). The model card and the regulation dossiers build on :func:`gather` too."""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

FORMATS = ("html", "pdf", "json")
MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "json": "application/json",
         "md": "text/markdown; charset=utf-8"}


@dataclass(frozen=True)
class Document:
    kind: str          # "report", "model-card", or a framework id
    format: str        # html | pdf | json | md
    body: bytes
    sha256: str
    filename: str

    @property
    def media_type(self) -> str:
        return MEDIA[self.format]


def model_facts(engine: Engine, run_id: str) -> dict[str, Any]:
    """Algorithm and hyperparameters of the certified artifact: loaded as the stages load it (hash checked,
    skops trusted types; a pickle only in the isolated process, which does not expose parameters)."""
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import reader
    from modelcert.pipeline import context_for

    with reader(engine) as s:
        run = s.get(CertificationRun, run_id)
        if run is None or not (run.spec or {}).get("model", {}).get("artifact"):
            return {}
        if run.spec["model"].get("format") != "skops":
            return {"note": "artifact is not skops: it runs isolated and its parameters are not read"}
        ctx = context_for(run)
    try:
        model = ctx.model
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        params = final.get_params(deep=False) if hasattr(final, "get_params") else {}
        steps = " → ".join(type(st).__name__ for _, st in model.steps) if hasattr(model, "steps") else ""
        return {"algorithm": f"{type(final).__module__}.{type(final).__name__}" + (f" (pipeline: {steps})" if steps
                                                                                   else ""),
                "hyperparameters": {k: repr(v)[:120] for k, v in sorted(params.items())}}
    except Exception as exc:  # noqa: BLE001 - model facts are informative; the dossier says why they are absent
        return {"note": f"model not loaded: {type(exc).__name__}: {str(exc)[:160]}"}
    finally:
        ctx.close()


def gather(engine: Engine, run_id: str, *, facts: bool = True) -> dict[str, Any]:
    """The run's evidence report, with its stored (effective) spec and the waived checks of its review."""
    from modelcert import report
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import reader
    from modelcert.review import approval_summary

    rep = report.run_report(engine, run_id)
    with reader(engine) as s:
        run = s.get(CertificationRun, rep["run_id"])
        rep["spec"] = dict(run.spec or {}) if run is not None else {}
    try:
        rep["waived"] = list(approval_summary(engine, rep["run_id"]).get("waived") or [])
    except Exception:  # noqa: BLE001 - a run refused at registration has no review; nothing is waived then
        rep["waived"] = []
    rep["model_facts"] = model_facts(engine, rep["run_id"]) if facts else {}
    return freeze(rep)


def freeze(rep: dict[str, Any]) -> dict[str, Any]:
    """A certified run's dossier shows the evidence as it stood when the certificate was issued: the audit
    trail up to ``certificate_issued`` and the certificate as issued. Later events (expiry, suspension,
    revocation) are on the run page and in the audit log, not in the frozen document, which keeps its bytes."""
    cert = rep.get("certificate")
    if not cert:
        rep["frozen"] = False
        return rep
    audit = rep.get("audit") or []
    cut = next((i for i, e in enumerate(audit) if e["action"] == "certificate_issued"), None)
    if cut is not None:
        rep["audit"] = audit[: cut + 1]
        rep["findings"] = findings_as_issued(rep.get("findings") or [], audit[: cut + 1], audit[cut + 1:])
    rep["certificate"] = {**cert, "status": "valid", "status_reason": "as issued (the live status is on the run page)"}
    rep["frozen"] = True
    return rep


def findings_as_issued(rows: list[dict[str, Any]], before: list[dict[str, Any]],
                       after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The register rows as they stood when the certificate was issued, undoing from the audit trail what came
    later: a finding a later run closed is shown open, a remediation edited later shows its text as of issue.
    (Acceptances cannot come later: a certificate is issued only once every blocking finding is accepted.)"""
    closed_later = {e["payload"].get("finding") for e in after if e["action"] == "finding_closed"}
    edited_later = {e["payload"].get("finding") for e in after if e["action"] == "finding_remediation"}
    remediation_then = {e["payload"].get("finding"): e["payload"].get("remediation", "") for e in before
                        if e["action"] == "finding_remediation"}
    accepted_reason = {e["payload"].get("finding"): e["payload"].get("reason", "") for e in before
                       if e["action"] == "finding_accepted"}
    out = []
    for f in rows:
        f = dict(f)
        if f.get("id") in closed_later:
            f["status"] = "accepted" if f.get("accepted_by") else "open"
            f["reason"] = accepted_reason.get(f["id"], "") if f.get("accepted_by") else ""
        if f.get("id") in edited_later:
            f["remediation"] = remediation_then.get(f["id"], "")
        out.append(f)
    return out


def digest(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()


def report_document(engine: Engine, run_id: str, fmt: str, *, record: bool = True,
                    rep: dict[str, Any] | None = None) -> Document:
    """The run's report as html | pdf | json; its sha256 is recorded with the run (``store``). ``rep``: the
    run's :func:`gather` ed evidence when the caller has it already."""
    import json

    from modelcert.dossier import content, render, store
    from modelcert.errors import ModelcertError

    if fmt not in FORMATS:
        raise ModelcertError(f"--format: {fmt!r} is not allowed; allowed: {', '.join(FORMATS)}, text")
    rep = rep if rep is not None else gather(engine, run_id)
    name = f"{rep['model']}_{rep['version']}_{rep['run_id'][:8]}_report.{fmt}"
    if fmt == "json":
        body = json.dumps(rep, indent=2, sort_keys=True, default=str).encode()
    else:
        doc = content.build(rep, waived=rep["waived"], facts=rep["model_facts"])
        text = render.html("report.html.j2", doc=doc)
        body = text.encode() if fmt == "html" else render.pdf(text)
    out = Document("report", fmt, body, digest(body), name)
    if record:
        store.record(engine, rep["run_id"], out)
    return out

