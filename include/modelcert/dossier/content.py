"""What the dossier says, as plain data: built from a run's evidence report (``modelcert.report.run_report``)
and its stored spec, in the order the issue fixes — summary, findings, one section per stage with its figures
and table, model facts, sign-offs, audit trail. Rendering (HTML, PDF, Markdown) is ``render``'s job.

Pure functions of the report dict (plus an optional ``model_facts`` dict), so tests can feed a fixture; nothing
here reads a clock: the only times shown are the stored ones, which keeps a frozen dossier byte-identical.
"""

from __future__ import annotations

import math
from typing import Any

from modelcert.dossier import plots

#: What a failed check means, in plain words (the reader is a validator or an auditor, not the developer).
MEANING: dict[str, str] = {
    "roc_auc": "The model separates positive from negative cases less well than required.",
    "balanced_accuracy": "Averaged over both classes, the model is right less often than required.",
    "accuracy": "The model is right less often than required.",
    "expected_calibration_error": "Predicted probabilities do not match observed rates: a score of 0.7 does not "
                                  "mean a 70% chance, so scores cannot be read as probabilities.",
    "brier_score": "The probability predictions are, on average, further from the outcomes than allowed.",
    "disparate_impact": "One group receives the favorable outcome markedly less often than the reference group "
                        "(the four-fifths rule of thumb is breached).",
    "statistical_parity_difference": "The favorable-outcome rates of two groups differ by more than allowed.",
    "equal_opportunity_difference": "Among people who deserve the favorable outcome, one group gets it less often.",
    "average_odds_difference": "Error rates (true and false positive rates) differ between groups.",
    "false_positive_rate_difference": "One group is wrongly given the favorable outcome more often than another.",
    "false_negative_rate_difference": "One group is wrongly denied the favorable outcome more often than another.",
    "group_size": "A group is too small for its fairness metrics to be reliable.",
    "robust_accuracy": "Small, deliberate changes to the inputs flip too many decisions (adversarial attacks).",
    "noise_flip_rate": "Small random noise on the inputs flips too many decisions.",
    "drifted_share": "Too many features are distributed differently in current data than at training time: "
                     "the evaluation may no longer describe the population the model sees.",
    "null_fraction": "Data has more missing values than allowed.",
    "duplicate_fraction": "Data holds more duplicate rows than allowed.",
    "leakage_fraction": "Test rows also appear in the training data: performance is overstated.",
    "declaration": "A declaration the policy requires is missing from the spec.",
    "pii_not_feature": "Personal data is used as a model input.",
    "protected_not_feature": "A protected attribute is a model input without a justification.",
    "signoff_roles": "The sign-off quorum does not include enough distinct roles for the risk tier.",
    "dossier_completeness": "A regulation dossier the jurisdictions require has items no evidence covers.",
}
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
STAGE_TITLES = {"data_quality": "Data quality", "performance": "Performance", "robustness": "Robustness",
                "fairness": "Fairness", "drift": "Drift", "compliance": "Compliance",
                "explainability": "Explainability"}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def verdict_of(check: dict[str, Any]) -> str:
    """pass | fail | warn | inconclusive | info, from a check row (``detail.verdict`` when the stage set one)."""
    v = (check.get("detail") or {}).get("verdict") or check.get("verdict")
    if v == "inconclusive":
        return "inconclusive"
    if check.get("passed") is False:
        return "fail" if check.get("required", True) else "warn"
    if check.get("passed") is True:
        return "pass"
    return "info"


def bound_of(threshold: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """(lower, upper) of a stored threshold, for drawing it."""
    t = threshold or {}
    if t.get("between"):
        return t["between"][0], t["between"][1]
    if t.get("abs_max") is not None:
        return -t["abs_max"], t["abs_max"]
    return t.get("min"), t.get("max")


def threshold_text(threshold: dict[str, Any] | None) -> str:
    t = threshold or {}
    parts = []
    if t.get("min") is not None:
        parts.append(f"≥ {t['min']:g}")
    if t.get("max") is not None:
        parts.append(f"≤ {t['max']:g}")
    if t.get("abs_max") is not None:
        parts.append(f"|x| ≤ {t['abs_max']:g}")
    if t.get("between"):
        parts.append(f"between {t['between'][0]:g} and {t['between'][1]:g}")
    if t.get("rule"):
        parts.append(str(t["rule"]))
    text = " and ".join(parts) or "—"
    return text + (" (warning only)" if t.get("required") is False else "")


def check_id(stage: str, check: dict[str, Any]) -> str:
    """How a dossier cites a check: ``stage.name[subject]``."""
    return f"{stage}.{check['name']}" + (f"[{check['subject']}]" if check.get("subject") else "")


# --------------------------------------------------------------------------------------------- findings
def findings(rep: dict[str, Any], waived: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The run's findings, most severe first, with what each means in plain words.

    From the findings register (``rep["findings"]``, ``modelcert.findings``) when the run has rows there: its
    severity, verdict, key, meaning, owner, remediation, status and acceptance, with the judged value and bound
    looked up from the check row of the same key. Only a run without register rows (decided before the register
    existed, or never decided) falls back to its check rows: a failed required check is high; an inconclusive one
    or a failed warning-only check medium. Either way the checks the spec made non-blocking (``required: false``,
    ``waived``) follow as low, labelled as the spec's choice."""
    register = rep.get("findings") or []
    out = _from_register(rep, register) if register else _from_checks(rep)
    for w in waived or []:
        check = str(w.get("check", ""))
        out.append({"severity": "low", "verdict": "waived", "check": check, "stage": check.split(".", 1)[0],
                    "value": None, "threshold": w.get("text", ""), "source": "spec",
                    "message": "marked required: false in the spec: reported, never blocking",
                    "meaning": MEANING.get(check.split(".")[-1], "")})
    out.sort(key=lambda f: SEVERITY_ORDER.get(f["severity"], 9))  # stable: keeps the register's own order within
    return out


def _from_register(rep: dict[str, Any], register: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = {check_id(st["stage"], c): c for st in rep.get("stages", []) for c in st.get("checks", [])}
    out = []
    for f in register:
        c = checks.get(f["key"]) or {}
        out.append({"severity": f["severity"], "verdict": f["verdict"], "check": f["key"],
                    "stage": f["key"].split(".", 1)[0], "value": c.get("value"),
                    "threshold": threshold_text(c.get("threshold")) if c.get("threshold") else "—",
                    "message": f.get("message") or "", "meaning": f.get("meaning") or "", "source": "register",
                    "id": f.get("id"), "required": f.get("required"), "blocking": f.get("blocking"),
                    "accept_role": f.get("accept_role"), "owner": f.get("owner"),
                    "remediation": f.get("remediation") or "", "status": f.get("status"),
                    "accepted_by": f.get("accepted_by"), "accepted_role": f.get("accepted_role"),
                    "accepted_at": f.get("accepted_at"), "reason": f.get("reason") or "",
                    "carried_from": f.get("carried_from")})
    return out


def _from_checks(rep: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for st in rep.get("stages", []):
        for c in st.get("checks", []):
            v = verdict_of(c)
            if v not in ("fail", "warn", "inconclusive"):
                continue
            severity = "high" if v == "fail" else "medium"
            out.append({"severity": severity, "verdict": v, "check": check_id(st["stage"], c), "stage": st["stage"],
                        "value": c.get("value"), "threshold": threshold_text(c.get("threshold")),
                        "message": c.get("message") or "", "meaning": MEANING.get(c["name"], ""),
                        "source": "checks"})
    out.sort(key=lambda f: (SEVERITY_ORDER[f["severity"]], f["stage"], f["check"]))
    return out


def findings_source(rep: dict[str, Any]) -> str:
    """Where a document's findings come from, in one sentence for its reader."""
    if rep.get("findings"):
        return ("From the findings register of this run (severity set by the risk policy of its tier; a blocking "
                "finding must be accepted before sign-off).")
    return ("From the check rows: this run has no findings-register rows (decided before the register existed, "
            "or not decided).")


def acceptances(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """Risk acceptances of the run's findings: who accepted which finding, in which role, why, when, and on which
    evidence digest — from the audit events ``finding_accepted`` (the record ``findings.unaccepted`` trusts; the
    register row's reason is overwritten if a later run closes the finding, the event is not)."""
    out = []
    for e in rep.get("audit") or []:
        p = e.get("payload") or {}
        if e.get("action") != "finding_accepted" or not isinstance(p, dict):
            continue
        out.append({"who": e.get("actor"), "role": p.get("role"), "finding": p.get("key"), "id": p.get("finding"),
                    "severity": p.get("severity"), "verdict": p.get("verdict"), "reason": p.get("reason") or "",
                    "at": e.get("ts"), "evidence_digest": p.get("evidence_digest") or "",
                    "authenticated_via": p.get("authenticated_via")})
    return out


# --------------------------------------------------------------------------------------------- fairness
def fairness_view(summary: dict[str, Any], checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per attribute: groups (rates) and comparisons (value, 95% interval, threshold, verdict), from either the
    per-category stage summary (``attributes.<a>.groups`` a list) or the older privileged/unprivileged one."""
    out = []
    for attr, a in (summary.get("attributes") or {}).items():
        groups_raw = a.get("groups")
        if isinstance(groups_raw, list):  # per-category schema
            groups = [{"label": str(g.get("group")), "n": g.get("n"), "share": g.get("share"),
                       "selection_rate": g.get("selection_rate"), "tpr": g.get("tpr"), "fpr": g.get("fpr"),
                       "is_reference": bool(g.get("is_reference")), "excluded": g.get("excluded_because"),
                       "ci95": g.get("selection_rate_ci95")} for g in groups_raw]
            comparisons = [{"label": f"{c.get('group')}", "metric": c.get("metric"), "group": c.get("group"),
                            "value": c.get("value"), "ci95": c.get("ci95"), "verdict": c.get("verdict"),
                            "threshold": c.get("threshold"), "p_adjusted": c.get("p_adjusted")}
                           for c in a.get("comparisons") or []]
            out.append({"attribute": attr, "kind": a.get("kind", "categorical"), "reference": a.get("reference"),
                        "reference_rule": a.get("reference_rule"), "groups": groups, "comparisons": comparisons})
            continue
        groups = []
        for name in ("privileged", "unprivileged"):
            g = (groups_raw or {}).get(name) or {}
            groups.append({"label": name, "n": g.get("size"), "share": None, "selection_rate": g.get("selection_rate"),
                           "tpr": g.get("true_positive_rate"), "fpr": g.get("false_positive_rate"),
                           "is_reference": name == "privileged", "excluded": None, "ci95": None})
        comparisons = []
        for c in checks:
            if c.get("subject") == attr and c["name"] in (a.get("metrics") or {}):
                v = verdict_of(c)
                comparisons.append({"label": "unprivileged vs privileged", "metric": c["name"], "group": "unprivileged",
                                    "value": c.get("value"), "ci95": (c.get("detail") or {}).get("ci95"),
                                    "verdict": None if v == "info" else ("fail" if v in ("fail", "warn") else v),
                                    "threshold": c.get("threshold"), "p_adjusted": None})
        out.append({"attribute": attr, "kind": "privileged_range" if isinstance(a.get("privileged"), dict)
                    else "categorical", "reference": a.get("privileged"), "reference_rule": "declared privileged group",
                    "groups": groups, "comparisons": comparisons})
    return out


def impact_ratio_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Impact ratio per category: its selection rate over the highest selection rate of an included category."""
    included = [g for g in groups if not g.get("excluded") and _finite(g.get("selection_rate"))]
    top = max((g["selection_rate"] for g in included), default=None)
    return [{"category": g["label"], "n": g.get("n"), "selection_rate": g.get("selection_rate"),
             "impact_ratio": (g["selection_rate"] / top) if top and _finite(g.get("selection_rate")) else None,
             "excluded": g.get("excluded")} for g in groups]


# --------------------------------------------------------------------------------------------- stage sections
def _checks_of(st: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [c for c in st.get("checks", []) if c["name"] == name]


def _table(st: dict[str, Any], *, judged_only: bool = False) -> list[dict[str, Any]]:
    rows = []
    for c in st.get("checks", []):
        v = verdict_of(c)
        if judged_only and v == "info":
            continue
        rows.append({"check": c["name"], "subject": c.get("subject") or "", "value": c.get("value"),
                     "threshold": threshold_text(c.get("threshold")) if c.get("threshold") else "—", "verdict": v,
                     "message": c.get("message") or ""})
    return rows


def stage_section(st: dict[str, Any], *, figures: bool = True) -> dict[str, Any]:
    """One stage: status, library, figures (inline SVG), notes and its check table."""
    stage, summary = st["stage"], st.get("summary") or {}
    figs: list[dict[str, str]] = []
    notes: list[str] = []
    table = _table(st)
    extra: dict[str, Any] = {}
    if st.get("status") in ("not_applicable", "error"):
        notes.append(f"{st['status'].replace('_', ' ')}: {st.get('reason') or ''}")
    elif stage == "performance":
        auc = next((c.get("value") for c in _checks_of(st, "roc_auc")), None)
        if summary.get("curves"):
            if figures:
                figs.append({"title": "ROC and precision-recall curves", "svg": plots.roc_pr(summary["curves"], auc)})
        else:
            notes.append("No ROC/PR curve data in this run's performance summary (recorded before curves were "
                         "stored, or no score was available).")
        ece = next(iter(_checks_of(st, "expected_calibration_error")), None)
        bins = ((ece or {}).get("detail") or {}).get("bins")
        if bins and figures:
            figs.append({"title": "Calibration overall and per group",
                         "svg": plots.calibration(bins, summary.get("calibration_by_group") or {},
                                                  (ece or {}).get("value"),
                                                  threshold_text((ece or {}).get("threshold")))})
        if summary.get("score_note"):
            notes.append(summary["score_note"])
        extra["confusion"] = summary.get("confusion")
    elif stage == "fairness":
        view = fairness_view(summary, st.get("checks", []))
        extra["fairness"] = view
        if summary.get("convention"):
            notes.append(summary["convention"])
        by_metric: dict[str, list[dict[str, Any]]] = {}
        thresholds: dict[str, Any] = {}
        for a in view:
            for c in a["comparisons"]:
                if c.get("threshold"):
                    vs = f" vs {a['reference']}" if a.get("reference") and not isinstance(a["reference"], dict) else ""
                    by_metric.setdefault(c["metric"], []).append({**c, "label": f"{a['attribute']}: {c['label']}{vs}"})
                    thresholds[c["metric"]] = c["threshold"]
        if figures:
            for metric, rows in sorted(by_metric.items()):
                figs.append({"title": f"{metric.replace('_', ' ')} with 95% intervals",
                             "svg": plots.interval_bars(f"{metric} (bound {threshold_text(thresholds[metric])})", rows,
                                                        bound=bound_of(thresholds[metric]), xlabel=metric)})
            for a in view:
                figs.append({"title": f"Rates per group: {a['attribute']}",
                             "svg": plots.group_rates(f"{a['attribute']}: rates per group (favorable outcome)",
                                                      a["groups"], ["selection_rate", "tpr", "fpr"])})
                rows = impact_ratio_rows(a["groups"])
                if len(rows) >= 2:
                    figs.append({"title": f"Impact ratios: {a['attribute']}",
                                 "svg": plots.impact_ratios(f"{a['attribute']}: impact ratio per category", rows)})
        table = _table(st, judged_only=True)
    elif stage == "drift":
        rows = [{"column": c.get("subject"), "score": c.get("value"), "method": d.get("method"),
                 "threshold": d.get("threshold"), "drifted": d.get("drifted")}
                for c in _checks_of(st, "column_drift") for d in [c.get("detail") or {}]]
        extra["drift"] = rows
        methods = sorted({str(r["method"]) for r in rows})
        notes.append(f"Evidently picks a test per column; methods used here: {', '.join(methods) or 'none'}. "
                     "p-values (drift when below the threshold) and distances (drift when above) are different "
                     f"scales. Compared: data.{summary.get('reference_dataset', 'reference')} against data.current.")
        if summary.get("excluded_columns"):
            notes.append("Not compared: " + "; ".join(f"{k} ({v})" for k, v in summary["excluded_columns"].items()))
        if rows and figures:
            figs.append({"title": "Drift per feature", "svg": plots.drift(rows)})
        table = _table(st, judged_only=True) + [
            {"check": "column_drift", "subject": r["column"], "value": r["score"],
             "threshold": f"{r['method']} threshold {r['threshold']}", "verdict": "drifted" if r["drifted"] else
             ("no drift" if r["drifted"] is False else "unknown"), "message": ""} for r in rows]
    elif stage == "robustness":
        series: dict[str, list[tuple[float, float]]] = {}
        bound = None
        for c in _checks_of(st, "robust_accuracy"):
            eps = (c.get("detail") or {}).get("eps")
            attack = str(c.get("subject") or "").split(" ")[0]
            if _finite(eps) and _finite(c.get("value")):
                series.setdefault(attack, []).append((float(eps), float(c["value"])))
            lo, _ = bound_of(c.get("threshold"))
            bound = lo if lo is not None else bound
        clean = next((c.get("value") for c in _checks_of(st, "clean_accuracy")), None)
        if series and figures:
            figs.append({"title": "Robust accuracy against attack budget",
                         "svg": plots.robustness(series, bound, clean)})
        for attack, why in (summary.get("attacks_not_applicable") or {}).items():
            notes.append(f"{attack}: not applicable: {why}")
    elif stage == "explainability":
        from modelcert.explain_report import explainability_tables

        extra["tables"] = explainability_tables(summary)
        imp = summary.get("importance") or {}
        if imp.get("features") and figures:
            figs.append({"title": "Feature importance", "svg": plots.importance(imp["features"], str(imp.get(
                "unit") or ""))})
    elif stage == "data_quality":
        counts = summary.get("expectations_by_dataset") or {}
        if counts and figures:
            figs.append({"title": "Data-quality expectations", "svg": plots.data_quality(counts)})
        table = [r for r in table if r["verdict"] != "pass"] + [
            {"check": f"{len([r for r in table if r['verdict'] == 'pass'])} expectations met", "subject": "",
             "value": None, "threshold": "", "verdict": "pass", "message": "(listed in the JSON report)"}]
    return {"stage": stage, "title": STAGE_TITLES.get(stage, stage), "status": st.get("status"),
            "library": f"{st.get('library', '')} {st.get('library_version', '')}".strip(), "figures": figs,
            "notes": notes, "table": table, **extra}


# --------------------------------------------------------------------------------------------- whole document
def summary_block(rep: dict[str, Any]) -> dict[str, Any]:
    spec = (rep.get("spec") or {})
    uc = spec.get("use_case") or {}
    approvals = [s for s in rep.get("signoffs", []) if s.get("decision") == "approve"]
    return {
        "model": rep.get("model"), "version": rep.get("version"), "owner": rep.get("owner"),
        "use_case": uc.get("description"), "intended_use": uc.get("intended_use"), "risk_tier": uc.get("risk_tier"),
        "jurisdictions": uc.get("jurisdictions") or [], "outcome": rep.get("status"),
        "reasons": rep.get("reasons") or [],
        "signed_off": [{"who": s["approver"], "role": s["role"], "at": s["at"]} for s in approvals],
        "risk_accepted": [{"who": a["who"], "role": a["role"], "finding": a["finding"], "at": a["at"]}
                          for a in acceptances(rep)],
        "certificate": rep.get("certificate"), "policy": rep.get("policy"),
        "evidence_digest": rep.get("evidence_digest"),
        "created_at": rep.get("created_at"), "decided_at": rep.get("decided_at"), "run_id": rep.get("run_id"),
    }


def model_facts_block(rep: dict[str, Any], facts: dict[str, Any] | None) -> dict[str, Any]:
    spec = rep.get("spec") or {}
    model = spec.get("model") or {}
    files = (rep.get("evidence") or {}).get("files") or {}
    return {
        "algorithm": (facts or {}).get("algorithm") or ("third-party model (predictions only)" if not model.get(
            "artifact") else "not loaded"),
        "hyperparameters": (facts or {}).get("hyperparameters") or {},
        "facts_note": (facts or {}).get("note"),
        "format": model.get("format"), "artifact": model.get("artifact"), "sha256": model.get("sha256"),
        "features": model.get("features") or [],
        "predictions": spec.get("predictions"),
        "datasets": [{"role": k, "path": v.get("path"), "sha256": v.get("sha256"), "bytes": v.get("bytes")}
                     for k, v in sorted(files.items())],
        "documentation": {k: v for k, v in (spec.get("documentation") or {}).items() if v},
    }


def build(rep: dict[str, Any], *, waived: list[dict[str, Any]] | None = None, facts: dict[str, Any] | None = None,
          figures: bool = True, audit_limit: int = 60) -> dict[str, Any]:
    """The report document: summary, findings, stage sections, model facts, sign-offs, audit excerpt."""
    audit = rep.get("audit") or []
    return {
        "title": f"Certification report: {rep.get('model')} {rep.get('version')}",
        "summary": summary_block(rep),
        "findings": findings(rep, waived),
        "findings_source": findings_source(rep),
        "acceptances": acceptances(rep),
        "stages": [stage_section(st, figures=figures) for st in rep.get("stages", [])],
        "model": model_facts_block(rep, facts),
        "signoffs": rep.get("signoffs") or [],
        "audit": audit[-audit_limit:],
        "audit_total": len(audit),
        "files": (rep.get("evidence") or {}).get("files") or {},
    }
