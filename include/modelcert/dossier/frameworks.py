"""Regulation dossiers: one document per framework (EU AI Act Annex IV, NYC LL144, SR 26-2, Colorado SB 24-205),
each opening with a completeness table — every item the framework asks for, and the evidence that covers it
(check ids, digests, spec fields) or what is missing ("missing: declare X in the spec").

The checklists are data (``frameworks/*.yaml``: items, references, version and the date they were checked), so
they can follow the rules as they move without code changes. Each item lists what it ``needs``; a need is one of

* ``spec: a.b``            a spec field, present and non-empty
* ``file: role``           a dataset recorded with its sha256 (``data.<role>``)
* ``model: identity|features``   the artifact's sha256 (or the predictions column) / the model's inputs
* ``stage: name``          the stage ran (passed or failed) — cites its judged checks
* ``check: stage.name``    that check was computed
* ``signoffs: quorum|independence``   approvals recorded / approvers independent of the owner and trigger
* ``policy: thresholds``, ``audit: chain``, ``findings: all``, ``run: date``, ``recertification: schedule``
* ``ll144: sex|race|intersection|scoring|excluded|unknown``   the LL144 tables (``ll144``)
* ``any: [need, …]``       one of them

``completeness`` works on a finished run (``Evidence.from_report``) and, for the compliance stage, on a spec
alone (``Evidence.planned``): stage evidence is then judged by whether the stage *can* produce it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine

from modelcert.errors import ModelcertError

FRAMEWORK_DIR = Path(__file__).resolve().parent / "frameworks"
FRAMEWORKS = ("eu-ai-act", "nyc-ll144", "sr-26-2", "colorado")
#: ``use_case.jurisdictions`` value → the frameworks it requires (documented in the README). Also each
#: framework file's own ``jurisdictions`` list, merged in ``required_frameworks``.
JURISDICTION_ALIASES = {"EU": ("eu-ai-act",), "US-NYC": ("nyc-ll144",), "US-CO": ("colorado",),
                        "US-FED": ("sr-26-2",), "US-OCC": ("sr-26-2",), "US-BANKING": ("sr-26-2",)}
STAGE_ORDER = ("data_quality", "performance", "robustness", "fairness", "drift", "compliance")


@functools.cache
def load(framework: str) -> dict[str, Any]:
    if framework not in FRAMEWORKS:
        raise ModelcertError(f"--framework: {framework!r} is not allowed; allowed: {', '.join(FRAMEWORKS)}")
    return dict(yaml.safe_load((FRAMEWORK_DIR / f"{framework}.yaml").read_text(encoding="utf-8")))


def required_frameworks(jurisdictions: list[str]) -> list[str]:
    """The frameworks a spec's ``use_case.jurisdictions`` require (case-insensitive), in a fixed order."""
    wanted = {j.strip().upper() for j in jurisdictions}
    out = {fw for j in wanted for fw in JURISDICTION_ALIASES.get(j, ())}
    for fw in FRAMEWORKS:
        if wanted & {j.upper() for j in load(fw).get("jurisdictions", [])}:
            out.add(fw)
    return [fw for fw in FRAMEWORKS if fw in out]


# --------------------------------------------------------------------------------------------- evidence
def _get(d: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def _present(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, str):
        return bool(v.strip())
    if isinstance(v, (list, dict)):
        return bool(v)
    return True


@dataclass
class Evidence:
    """What a completeness table is judged on: the spec, and (for a finished run) its stored evidence."""

    spec: dict[str, Any]
    planned: bool = False
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    signoffs: list[dict[str, Any]] = field(default_factory=list)
    owner: str | None = None
    triggered_by: str | None = None
    audit_events: int = 0
    policy: str | None = None
    digest: str | None = None
    created_at: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    ll144: dict[str, Any] | None = None

    @classmethod
    def from_report(cls, rep: dict[str, Any], *, findings: list[dict[str, Any]] | None = None,
                    ll144: dict[str, Any] | None = None) -> Evidence:
        return cls(spec=rep.get("spec") or {}, stages={s["stage"]: s for s in rep.get("stages", [])},
                   files=(rep.get("evidence") or {}).get("files") or {}, signoffs=rep.get("signoffs") or [],
                   owner=rep.get("owner"), triggered_by=(rep.get("airflow") or {}).get("triggered_by"),
                   audit_events=len(rep.get("audit") or []), policy=rep.get("policy"),
                   digest=rep.get("evidence_digest"), created_at=rep.get("created_at"), findings=findings or [],
                   ll144=ll144)

    @classmethod
    def for_spec(cls, spec: dict[str, Any], *, files: dict[str, Any] | None = None, policy: str | None = None,
                 digest: str | None = None) -> Evidence:
        return cls(spec=spec, planned=True, files=files or {}, policy=policy, digest=digest)

    @property
    def is_audit(self) -> bool:
        return not _get(self.spec, "model.artifact")


def _stage_can_run(ev: Evidence, stage: str) -> str | None:
    """Why a stage cannot produce evidence for this spec (planning mode), or None."""
    if stage == "robustness" and ev.is_audit:
        return "robustness does not apply to a predictions-only audit (no model to attack)"
    if stage == "drift" and not _get(ev.spec, "data.current"):
        return "the drift stage needs data.current: declare data.current in the spec"
    return None


def _judged_ids(stage: dict[str, Any], limit: int = 6) -> list[str]:
    from modelcert.dossier.content import check_id

    ids = [check_id(stage["stage"], c) for c in stage.get("checks", []) if c.get("passed") is not None]
    return ids[:limit] + ([f"… {len(ids) - limit} more"] if len(ids) > limit else [])


def resolve(need: dict[str, Any], ev: Evidence) -> tuple[bool, list[str], str]:
    """(covered, evidence lines, what is missing) for one need."""
    [(kind, arg)] = need.items()
    short = (ev.digest or "")[:16]
    if kind == "any":  # one of several kinds of evidence covers the item
        results = [resolve(n, ev) for n in arg]
        lines = [line for ok, ls, _ in results if ok for line in ls]
        if lines:
            return True, lines, ""
        return False, [], " or ".join(why for _, _, why in results)
    if kind == "spec":
        v = _get(ev.spec, arg)
        if _present(v):
            text = str(v) if not isinstance(v, (list, dict)) else str(v)
            return True, [f"spec {arg}: {text[:90]}{'…' if len(text) > 90 else ''}"], ""
        return False, [], f"declare {arg} in the spec"
    if kind == "file":
        f = ev.files.get(arg)
        if f:
            return True, [f"data.{arg} sha256 {str(f.get('sha256'))[:16]}… ({f.get('path')})"], ""
        if ev.planned and _get(ev.spec, f"data.{arg}"):
            return True, [f"data.{arg} (hashed at registration)"], ""
        return False, [], f"declare data.{arg} in the spec"
    if kind == "model":
        if arg == "identity":
            if not ev.is_audit:
                return True, [f"model.artifact sha256 {str(_get(ev.spec, 'model.sha256'))[:16]}…, version "
                              f"{_get(ev.spec, 'model.version')}"], ""
            return True, [f"third-party outputs: predictions.column {_get(ev.spec, 'predictions.column')}, version "
                          f"{_get(ev.spec, 'model.version')}"], ""
        feats = _get(ev.spec, "model.features")
        if feats:
            return True, [f"model.features ({len(feats)}): {', '.join(feats[:8])}{' …' if len(feats) > 8 else ''}"], ""
        if _present(_get(ev.spec, "documentation.model_description")):
            return True, ["third-party model: inputs as described in documentation.model_description"], ""
        return False, [], "declare documentation.model_description (the inputs of the third-party model) in the spec"
    if kind == "stage":
        if ev.planned:
            why = _stage_can_run(ev, arg)
            return (False, [], why) if why else (True, [f"{arg} stage of this run"], "")
        st = ev.stages.get(arg)
        if st is None:
            return False, [], f"the {arg} stage has no result for this run"
        if st.get("status") in ("passed", "failed"):
            return True, [f"{arg} stage {st['status']} (evidence {short}…): " + ", ".join(_judged_ids(st))], ""
        return False, [], f"the {arg} stage is {st.get('status')}: {st.get('reason') or ''}".rstrip(": ")
    if kind == "check":
        stage, name = arg.split(".", 1)
        if ev.planned:
            why = _stage_can_run(ev, stage)
            if why:
                return False, [], why
            if name in ("roc_auc", "expected_calibration_error") and ev.is_audit and not _get(
                    ev.spec, "predictions.score_column"):
                return False, [], f"{arg} needs a score: declare predictions.score_column in the spec"
            return True, [f"check {arg} of this run"], ""
        st = ev.stages.get(stage) or {}
        rows = [c for c in st.get("checks", []) if c["name"] == name]
        if rows and any(c.get("value") is not None or c.get("passed") is not None for c in rows):
            from modelcert.dossier.content import check_id, verdict_of

            return True, [f"{check_id(stage, c)} = {_fmt(c.get('value'))} ({verdict_of(c)})" for c in rows[:4]], ""
        return False, [], f"check {arg} was not computed for this run"
    if kind == "signoffs":
        if ev.planned:
            return True, ["sign-off quorum of the risk policy (four-eyes: never the owner or the trigger)"], ""
        approvals = [s for s in ev.signoffs if s.get("decision") == "approve"]
        if not approvals:
            return False, [], "not signed off yet: the run awaits (or never reached) sign-off"
        if arg == "independence":
            conflicted = [s["approver"] for s in approvals if s["approver"] in (ev.owner, ev.triggered_by)]
            if conflicted:
                return False, [], f"approver(s) {conflicted} also submitted or triggered the run"
            return True, [f"approvers {', '.join(s['approver'] + ' (' + s['role'] + ')' for s in approvals)} ≠ owner "
                          f"{ev.owner}" + (f" and trigger {ev.triggered_by}" if ev.triggered_by else "")], ""
        return True, [f"{s['approver']} as {s['role']} at {s['at'][:19]} on digest {s['evidence_digest'][:16]}…"
                      for s in approvals], ""
    if kind == "policy":
        return True, [f"risk policy {ev.policy or '(version recorded at registration)'}: thresholds fixed before the "
                      "run, stored next to each value"], ""
    if kind == "audit":
        what = f"{ev.audit_events} audit events for this run" if not ev.planned else "audit events of this run"
        return True, [f"{what}, hash-chained with sealed evidence rows (`modelcert audit verify`)"], ""
    if kind == "findings":
        n = len(ev.findings)
        src = ("the findings register (owner, remediation, status, risk acceptances)"
               if any(f.get("source") == "register" for f in ev.findings) else "the check rows")
        return True, [f"{n} finding(s) from {src}: failed, inconclusive or waived checks, most severe first"
                      if not ev.planned
                      else "findings of this run (failed, inconclusive or waived checks)"], ""
    if kind == "run":
        return True, [f"audit date {str(ev.created_at or 'of this run')[:10]}"], ""
    if kind == "recertification":
        rc = _get(ev.spec, "recertification")
        if rc:
            return True, [f"recertification on {rc.get('current_data')} (stages "
                          f"{', '.join(rc.get('stages') or ['default'])}), cadence set by the risk policy"], ""
        return False, [], "declare a recertification section (current_data) in the spec"
    if kind == "ll144":
        return _resolve_ll144(arg, ev)
    raise ModelcertError(f"framework: unknown need {kind!r}")  # pragma: no cover - the shipped files use known ones


def _ll144_attr(ev: Evidence, which: str) -> str | None:
    fw = load("nyc-ll144")
    names = fw["sex_attributes"] if which == "sex" else fw["race_attributes"]
    attrs = list((_get(ev.spec, "data.protected_attributes") or {}).keys())
    return next((a for a in attrs if a.lower() in names), None)


def _resolve_ll144(arg: str, ev: Evidence) -> tuple[bool, list[str], str]:
    sex, race = _ll144_attr(ev, "sex"), _ll144_attr(ev, "race")
    need = {"sex": [("sex", sex)], "race": [("race/ethnicity", race)],
            "intersection": [("sex", sex), ("race/ethnicity", race)]}.get(arg, [])
    for label, attr in need:
        if attr is None:
            return False, [], (f"declare a protected attribute for {label} (data.protected_attributes: "
                               f"{'sex or gender' if label == 'sex' else 'race or ethnicity'})")
    if ev.planned or ev.ll144 is None:
        return True, [f"LL144 table computed from data.test ({arg})"], ""
    tables = ev.ll144
    if arg in ("sex", "race", "intersection"):
        t = tables[arg]
        return True, [f"{len(t['rows'])} categories of {t['attribute']} from data.test sha256 "
                      f"{tables['test_sha256'][:16]}…"], ""
    if arg == "scoring":
        if tables.get("scoring") is None:
            return True, ["not applicable: the tool outputs no score, so selection rates apply"], ""
        return True, [f"scoring rates above the median score {_fmt(tables['scoring']['median'])}"], ""
    if arg == "excluded":
        ex = [f"{r['category']} (n={r['n']})" for k in ("sex", "race", "intersection") if k in tables
              for r in tables[k]["rows"] if r["excluded"] == "under 2% of the data"]
        return True, [f"excluded from impact ratios: {', '.join(ex) if ex else 'none (every category ≥ 2%)'}"], ""
    if arg == "unknown":
        return True, [f"unknown {k}: {tables[k]['unknown']}" for k in ("sex", "race") if k in tables], ""
    return False, [], f"unknown LL144 item {arg}"  # pragma: no cover


def _fmt(v: Any) -> str:
    from modelcert.dossier.render import fmt_num

    return fmt_num(v)


def completeness(framework: str, ev: Evidence) -> list[dict[str, Any]]:
    """One row per item: covered (every need met) or missing (naming each unmet need); never an empty row."""
    rows = []
    for item in load(framework)["items"]:
        evidence: list[str] = []
        missing: list[str] = []
        for need in item["needs"]:
            ok, lines, why = resolve(need, ev)
            evidence += lines
            if not ok:
                missing.append(why)
        rows.append({"id": item["id"], "title": item["title"], "reference": item["reference"],
                     "status": "missing" if missing else "covered", "evidence": evidence,
                     "missing": [f"missing: {m}" for m in missing], "needs": item["needs"]})
    return rows


def gaps(framework: str, ev: Evidence) -> list[str]:
    """The missing items as one line each (for the compliance stage's message)."""
    return [f"{r['id']} ({'; '.join(m.removeprefix('missing: ') for m in r['missing'])})"
            for r in completeness(framework, ev) if r["status"] == "missing"]


# --------------------------------------------------------------------------------------------- LL144
UNKNOWN = "Unknown"


def _category(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() in ("", "?", "nan", "None"):
        return UNKNOWN
    return str(v)


def ll144_rates(categories: list[str], selected: list[bool], *, min_share: float) -> dict[str, Any]:
    """Per category: count, share, selected count, selection rate; impact ratio against the highest rate of the
    included categories. The unknown category and categories under ``min_share`` are excluded from the ratios
    (their counts and rates are still shown)."""
    total = len(categories)
    counts: dict[str, list[int]] = {}
    for c, s in zip(categories, selected, strict=True):
        n_sel = counts.setdefault(c, [0, 0])
        n_sel[0] += 1
        n_sel[1] += int(bool(s))
    rows = []
    for cat in sorted(counts, key=lambda k: (-counts[k][0], k)):
        n, sel = counts[cat]
        excluded = ("unknown category" if cat == UNKNOWN else
                    "under 2% of the data" if n / total < min_share else None)
        rows.append({"category": cat, "n": n, "share": n / total, "selected": sel, "rate": sel / n,
                     "excluded": excluded})
    top = max((r["rate"] for r in rows if not r["excluded"]), default=0.0)
    for r in rows:
        r["impact_ratio"] = (r["rate"] / top) if top > 0 else None
    return {"rows": rows, "total": total, "unknown": counts.get(UNKNOWN, [0])[0], "highest_rate": top}


def ll144_tables(engine: Engine, run_id: str) -> dict[str, Any]:
    """The LL144 tables of a run, from its test data and predictions (hash-checked files, as the stages read
    them): selection = the favorable prediction; for a tool with a score, also the scoring rate (score above
    the sample's median), per sex, per race/ethnicity and per intersection."""
    import numpy as np

    from modelcert.db.models import CertificationRun
    from modelcert.db.session import reader
    from modelcert.pipeline import context_for

    fw = load("nyc-ll144")
    with reader(engine) as s:
        run = s.get(CertificationRun, run_id)
        if run is None:
            raise ModelcertError(f"run {run_id} not found")
        spec = dict(run.spec or {})
        ctx = context_for(run)
    try:
        ev = Evidence.for_spec(spec)
        sex, race = _ll144_attr(ev, "sex"), _ll144_attr(ev, "race")
        frame = ctx.frame("test")
        y_pred, score = ctx.predictions("test")
        fav = 1 if ctx.favorable_is_positive else 0
        selected = [bool(v) for v in (np.asarray(y_pred) == fav)]
        test_sha = str((ctx.evidence.files.get("test") or {}).get("sha256", "")) if ctx.evidence else ""
    finally:
        ctx.close()
    min_share = float(fw["min_category_share"])
    out: dict[str, Any] = {"test_sha256": test_sha, "rows": len(selected), "favorable_label": spec["data"].get(
        "favorable_label"), "selection": "favorable prediction (data.favorable_label)", "min_share": min_share}
    cats: dict[str, list[str]] = {}
    for key, attr in (("sex", sex), ("race", race)):
        if attr is not None:
            cats[key] = [_category(v) for v in frame[attr].tolist()]
            out[key] = {"attribute": attr, **ll144_rates(cats[key], selected, min_share=min_share)}
    if "sex" in cats and "race" in cats:
        inter = [UNKNOWN if UNKNOWN in (a, b) else f"{a} × {b}" for a, b in zip(cats["sex"], cats["race"],
                                                                                  strict=True)]
        out["intersection"] = {"attribute": f"{sex} × {race}", **ll144_rates(inter, selected, min_share=min_share)}
    if score is not None:
        sc = np.asarray(score, dtype=float)
        med = float(np.median(sc))
        above = [bool(v) for v in sc > med]
        out["scoring"] = {"median": med, "column": _get(spec, "predictions.score_column") or "model probability",
                          **{k: {"attribute": out[k]["attribute"], **ll144_rates(
                              cats[k], above, min_share=min_share)}
                             for k in ("sex", "race") if k in cats}}
    else:
        out["scoring"] = None
    return out


# --------------------------------------------------------------------------------------------- document
def dossier_content(rep: dict[str, Any], framework: str, *, ll144: dict[str, Any] | None = None,
                    figures: bool = True) -> dict[str, Any]:
    """The dossier as data: framework header, completeness table, then each item's evidence."""
    from modelcert.dossier import content, plots

    fw = load(framework)
    found = content.findings(rep, rep.get("waived"))
    ev = Evidence.from_report(rep, findings=found, ll144=ll144)
    rows = completeness(framework, ev)
    sections = {s["stage"]: content.stage_section(s, figures=figures) for s in rep.get("stages", [])}
    needed_stages = [s for s in STAGE_ORDER if any(need.get("stage") == s or str(need.get("check", "")).startswith(
        s + ".") for it in fw["items"] for need in it["needs"]) and s in sections]
    ll_figs = []
    if ll144 and figures:
        for key in ("sex", "race", "intersection"):
            if key in ll144:
                t = ll144[key]
                ll_figs.append({"title": f"Impact ratios: {t['attribute']}", "svg": plots.impact_ratios(
                    f"{t['attribute']}: impact ratio (selection rate ÷ highest)",
                    [{"category": r["category"], "impact_ratio": r["impact_ratio"], "excluded": r["excluded"]}
                     for r in t["rows"]])})
    return {"framework": fw, "title": f"{fw['title']}: {rep.get('model')} {rep.get('version')}",
            "summary": content.summary_block(rep), "completeness": rows,
            "covered": sum(r["status"] == "covered" for r in rows), "total": len(rows),
            "spec": rep.get("spec") or {}, "stages": [sections[s] for s in needed_stages],
            "findings": found if any("findings" in n for it in fw["items"] for n in it["needs"]) else None,
            "findings_source": content.findings_source(rep), "acceptances": content.acceptances(rep),
            "signoffs": rep.get("signoffs") or [], "ll144": ll144, "ll144_figures": ll_figs,
            "documentation": {k: v for k, v in ((rep.get("spec") or {}).get("documentation") or {}).items() if v},
            "model": content.model_facts_block(rep, rep.get("model_facts"))}


def dossier_document(engine: Engine, run_id: str, framework: str, fmt: str = "md", *, record: bool = True) -> Any:
    """The framework's dossier of a run as md | html | pdf; its sha256 recorded with the run."""
    from modelcert.dossier import render, store
    from modelcert.dossier.documents import Document, digest, gather

    load(framework)  # refuses an unknown framework with one line
    if fmt not in ("md", "html", "pdf"):
        raise ModelcertError(f"--format: {fmt!r} is not allowed; allowed: md, html, pdf")
    rep = gather(engine, run_id, facts=framework in ("sr-26-2", "eu-ai-act"))
    ll144 = ll144_tables(engine, rep["run_id"]) if framework == "nyc-ll144" else None
    doc = dossier_content(rep, framework, ll144=ll144, figures=fmt != "md")
    if fmt == "md":
        body = render.markdown("dossier.md.j2", doc=doc).encode()
    else:
        text = render.html("dossier.html.j2", doc=doc)
        body = text.encode() if fmt == "html" else render.pdf(text)
    out = Document(framework, fmt, body, digest(body),
                   f"{rep['model']}_{rep['version']}_{rep['run_id'][:8]}_{framework}.{fmt}")
    if record:
        store.record(engine, rep["run_id"], out)
    return out
