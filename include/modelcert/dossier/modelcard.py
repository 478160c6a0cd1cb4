"""The model card (Mitchell et al., "Model Cards for Model Reporting", 2019), written with ``skops.card``.

Filled from the run's spec (``use_case``, ``documentation``, data and model sections) and its evidence
(performance checks, per-group fairness tables, findings). ``skops.card.Card`` is used without a template and
without the model object (``model=None``): the certifier never needs to deserialize the artifact to describe
it, the hyperparameters come from :func:`modelcert.dossier.model_facts` (the loaded skops model, hash checked),
and a predictions-only audit has no model at all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

SECTIONS = ("Model details", "Intended use", "Out-of-scope use", "Factors", "Metrics", "Evaluation data",
            "Training data", "Quantitative analyses", "Ethical considerations", "Caveats and recommendations")


def _or(v: Any, missing: str) -> str:
    return str(v) if v not in (None, "", [], {}) else f"*Not declared: {missing}.*"


def build_card(rep: dict[str, Any]) -> Any:
    """A ``skops.card.Card`` with the ten Mitchell et al. sections, in order."""
    from skops.card import Card

    from modelcert.dossier import content

    spec = rep.get("spec") or {}
    doc = spec.get("documentation") or {}
    uc = spec.get("use_case") or {}
    model = spec.get("model") or {}
    files = (rep.get("evidence") or {}).get("files") or {}
    facts = rep.get("model_facts") or {}
    cert = rep.get("certificate")
    card = Card(model=None, template=None, model_diagram=False)
    algorithm = facts.get("algorithm") or (
        f"third-party model audited from its outputs (predictions.column "
        f"{(spec.get('predictions') or {}).get('column')})" if not model.get("artifact") else "not loaded")

    details = [
        f"**{rep.get('model')} {rep.get('version')}**, owner {rep.get('owner')}"
        + (f", provided by {doc['provider']}" if doc.get("provider") else "") + ".",
        _or(doc.get("model_description"), "documentation.model_description"),
        f"Algorithm: {algorithm}.",
        (f"Artifact `{model.get('artifact')}` ({model.get('format')}), sha256 `{model.get('sha256')}`."
         if model.get("artifact") else ""),
        f"Certification run `{rep.get('run_id')}`: **{rep.get('status')}** under risk policy "
        f"{rep.get('policy') or '(not recorded)'}; evidence digest `{rep.get('evidence_digest')}`.",
        (f"Certificate `{cert['certificate_id']}` valid {cert['valid_from'][:10]} to {cert['valid_until'][:10]}."
         if cert else "No certificate issued."),
        f"Why this algorithm: {_or(doc.get('algorithm_rationale'), 'documentation.algorithm_rationale')}",
    ]
    card.add(**{"Model details": "\n\n".join(x for x in details if x)})
    if facts.get("hyperparameters"):
        hp = facts["hyperparameters"]
        card.add_table(**{"Model details/Hyperparameters": {"parameter": list(hp), "value": list(hp.values())}})
    card.add(**{"Intended use": f"{_or(uc.get('intended_use'), 'use_case.intended_use')}\n\n"
                                f"Use case: {uc.get('description')} (risk tier {uc.get('risk_tier')}; jurisdictions "
                                f"{', '.join(uc.get('jurisdictions') or []) or 'none declared'})."})
    oos = list(uc.get("out_of_scope") or [])
    card.add(**{"Out-of-scope use": "\n".join(f"- {x}" for x in oos) + ("\n\n" if oos else "")
                + _or(doc.get("foreseeable_misuse"), "documentation.foreseeable_misuse")})
    attrs = (spec.get("data") or {}).get("protected_attributes") or {}
    card.add(**{"Factors": "Groups evaluated (protected attributes, privileged / reference group): "
                           + "; ".join(f"{a} (privileged {v.get('privileged')})" for a, v in attrs.items())
                           + ". Outcome convention: favorable label "
                           f"{(spec.get('data') or {}).get('favorable_label')}, positive label "
                           f"{(spec.get('data') or {}).get('positive_label')}."})
    perf = next((s for s in rep.get("stages", []) if s["stage"] == "performance"), None)
    rows = [c for c in (perf or {}).get("checks", []) if c.get("value") is not None]
    card.add_table(description="Performance on the test set; the bound is the effective one (risk policy and "
                               "spec), verdict as judged.", **{"Metrics": {
        "metric": [c["name"] for c in rows], "value": [round(c["value"], 4) for c in rows],
        "bound": [content.threshold_text(c.get("threshold")) if c.get("threshold") else "informational" for c in rows],
        "verdict": [content.verdict_of(c) for c in rows]}})
    test = files.get("test") or {}
    evaluation = _or(doc.get("evaluation_data_description"), "documentation.evaluation_data_description")
    card.add(**{"Evaluation data": f"{evaluation}\n\n`{test.get('path')}` sha256 `{test.get('sha256')}`"
                                   + (f"; collected {doc['data_collection_period']}" if doc.get(
                                       "data_collection_period") else "") + "."})
    train = files.get("train") or {}
    card.add(**{"Training data": _or(doc.get("training_data_description"), "documentation.training_data_description")
                + (f"\n\n`{train.get('path')}` sha256 `{train.get('sha256')}`." if train else "")})
    fair = next((s for s in rep.get("stages", []) if s["stage"] == "fairness"), None)
    view = content.fairness_view((fair or {}).get("summary") or {}, (fair or {}).get("checks", [])) if fair else []
    card.add(**{"Quantitative analyses": "Per group, relative to the favorable outcome (selection rate = share "
                                         "given the favorable prediction; TPR, FPR), from the fairness stage."
                if view else "*No fairness evidence in this run.*"})
    for a in view:
        card.add_table(**{f"Quantitative analyses/{a['attribute']}": {
            "group": [g["label"] for g in a["groups"]], "n": [g["n"] for g in a["groups"]],
            "selection rate": [_r(g["selection_rate"]) for g in a["groups"]],
            "TPR": [_r(g["tpr"]) for g in a["groups"]], "FPR": [_r(g["fpr"]) for g in a["groups"]]}})
    card.add(**{"Ethical considerations": _or(doc.get("ethical_considerations"),
                                              "documentation.ethical_considerations")})
    found = content.findings(rep, rep.get("waived"))
    caveats = [_or(doc.get("limitations"), "documentation.limitations")]
    if doc.get("assumptions"):
        caveats.append(f"Assumptions: {doc['assumptions']}")
    if found:
        caveats.append("Findings of the certification run (most severe first):\n\n" + "\n".join(
            f"- {f['severity']}: `{f['check']}` {f['verdict']} — {f['meaning'] or f['message']}"
            + (f" Status: {f['status']}" + (f" by {f['accepted_by']} ({f['accepted_role']}): {f['reason']}"
                                            if f["status"] == "accepted" else "")
               + (f"; remediation: {f['remediation']}" if f.get("remediation") else "") + "."
               if f.get("status") else "") for f in found))
    if doc.get("monitoring_plan"):
        caveats.append(f"Monitoring: {doc['monitoring_plan']}")
    card.add(**{"Caveats and recommendations": "\n\n".join(caveats)})
    return card


def _r(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def model_card_document(engine: Engine, run_id: str, *, record: bool = True,
                        rep: dict[str, Any] | None = None) -> Any:
    """The run's model card as Markdown; its sha256 recorded with the run. ``rep``: its gathered evidence, when
    the caller has it already."""
    from modelcert.dossier import store
    from modelcert.dossier.documents import Document, digest, gather

    rep = rep if rep is not None else gather(engine, run_id)
    body = build_card(rep).render().encode()
    out = Document("model-card", "md", body, digest(body),
                   f"{rep['model']}_{rep['version']}_{rep['run_id'][:8]}_model-card.md")
    if record:
        store.record(engine, rep["run_id"], out)
    return out
