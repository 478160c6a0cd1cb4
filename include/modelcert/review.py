"""What an approver must see before they sign: one summary, shared by the page, the JSON API and the CLI.

An approval is only as good as what the approver looked at. The evidence report lists every check, but the
questions a reviewer actually has to answer are narrower: which checks failed without rejecting the run
(warnings), which checks the submitter made non-blocking (waived), what changed since this model was last
certified (thresholds loosened or tightened, data, the model itself, anything else in the spec), and which
risk policy judged the run. :func:`approval_summary` answers exactly those, from the database alone, so the
three entry points cannot disagree about what "the summary" is.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from sqlalchemy import Engine, select

from modelcert import findings
from modelcert.db.models import Certificate, CertificationRun, CheckResult, ModelVersion, StageResult
from modelcert.db.session import reader
from modelcert.pipeline import load_run
from modelcert.refs import shorten

Change = Literal["loosened", "tightened", "changed", "added", "removed"]

#: Keys that make a mapping in ``checks`` a threshold (``modelcert.thresholds.Threshold``).
BOUND_KEYS = ("min", "max", "abs_max", "between")
#: Scalar settings under ``checks`` where a larger value is a looser bar (judged like ``max``).
LARGER_IS_LOOSER = {"checks.drift.max_drifted_share"}
#: Longest value (as text) a summary repeats; specs are user input and must not make the page unbounded.
VALUE_CHARS = 80


# --------------------------------------------------------------------------------------------- entry point
def approval_summary(engine: Engine, run_id: str) -> dict[str, Any]:
    """Warnings, waived checks, the spec diff against this model's last certified spec, and the policy.

    ``baseline`` is the most recently issued certificate's run of the same model name (any version, any
    later certificate status: it *was* certified), never the run itself; without one ``spec_diff`` is None.
    ``policy`` is ``run.evidence["policy"]`` (version and sha256) when the run recorded it, else None.
    """
    with reader(engine) as s:
        run = load_run(s, run_id)
        mv = s.get(ModelVersion, run.model_version_id) if run.model_version_id else None
        rows = s.execute(
            select(CheckResult, StageResult.stage)
            .join(StageResult, CheckResult.stage_result_id == StageResult.id)
            .where(StageResult.run_id == run_id)
            .order_by(StageResult.stage, CheckResult.position)
        ).all()
        baseline = None
        if mv is not None:
            baseline = s.execute(
                select(CertificationRun, Certificate, ModelVersion)
                .join(Certificate, Certificate.run_id == CertificationRun.id)
                .join(ModelVersion, CertificationRun.model_version_id == ModelVersion.id)
                .where(ModelVersion.name == mv.name, CertificationRun.id != run_id)
                .order_by(Certificate.issued_at.desc(), Certificate.id.desc())
                .limit(1)
            ).first()
        spec = dict(run.spec or {})
        evidence = dict(run.evidence or {})
        summary: dict[str, Any] = {
            "run_id": run.id,
            "kind": run.kind,
            "model": mv.name if mv else None,
            "version": mv.version if mv else None,
            "evidence_digest": run.evidence_digest,
            "warnings": [_warning(c, stage) for c, stage in rows if c.passed is False and not c.required],
            #: Checks whose interval straddles their bound: the data cannot tell pass from fail. What a required
            #: one does is the tier's ``inconclusive.action`` (``findings`` says what must be accepted first).
            "inconclusive": [{**_warning(c, stage), "required": c.required,
                              "ci95": (c.detail or {}).get("ci95")}
                             for c, stage in rows if c.verdict == "inconclusive"],
            "findings": [{"id": f.id, "key": f.key, "severity": f.severity, "verdict": f.verdict,
                          "status": f.status, "blocking": f.blocking, "accept_role": f.accept_role,
                          "accepted_by": f.accepted_by, "reason": f.reason}
                         for f in findings.of_run(s, run_id)],
            "waived": waived_checks(spec),
            "policy": _policy(evidence),
            "baseline": None,
            "spec_diff": None,
        }
        if baseline is not None:
            base_run, cert, base_mv = baseline
            summary["baseline"] = {
                "run_id": base_run.id, "version": base_mv.version, "certificate_id": cert.id,
                "certificate_status": cert.status, "certified_at": cert.issued_at.isoformat(),
                "evidence_digest": base_run.evidence_digest,
            }
            summary["spec_diff"] = spec_diff(dict(base_run.spec or {}), spec, dict(base_run.evidence or {}), evidence)
    return summary


# --------------------------------------------------------------------------------------------- parts
def _warning(c: CheckResult, stage: str) -> dict[str, Any]:
    return {"check": f"{stage}.{c.name}", "subject": c.subject or "", "value": c.value,
            "threshold": c.threshold, "text": threshold_text(c.threshold), "message": c.message or ""}


def _policy(evidence: dict[str, Any]) -> dict[str, str] | None:
    raw = evidence.get("policy")
    if not isinstance(raw, dict) or not raw.get("version"):
        return None
    return {"version": shorten(str(raw["version"]), VALUE_CHARS), "sha256": str(raw.get("sha256") or "")}


def waived_checks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every check the spec marks ``required: false`` (a failure only warns), by its spec path."""
    out: list[dict[str, Any]] = []
    for path, value in _walk(spec.get("checks") or {}, "checks"):
        if isinstance(value, dict) and value.get("required") is False:
            out.append({"check": path, "threshold": value, "text": threshold_text(value)})
    return out


def spec_diff(old: dict[str, Any], new: dict[str, Any], old_evidence: dict[str, Any],
              new_evidence: dict[str, Any]) -> dict[str, Any]:
    """What changed from the certified spec ``old`` to ``new``: thresholds (per check, old → new, with the
    direction), datasets and model (by sha256 of the bytes judged), and every other spec field."""
    old_files = dict(old_evidence.get("files") or {})
    new_files = dict(new_evidence.get("files") or {})
    data = []
    for name in sorted((set(old_files) | set(new_files)) - {"model"}):
        a, b = _sha(old_files.get(name)), _sha(new_files.get(name))
        if a != b:
            data.append({"dataset": name, "old_sha256": a, "new_sha256": b})
    old_model, new_model = _sha(old_files.get("model")), _sha(new_files.get("model"))
    model = None if old_model == new_model else {"old_sha256": old_model, "new_sha256": new_model}
    thresholds = _threshold_changes(old.get("checks") or {}, new.get("checks") or {})
    other = []
    old_rest = dict(_walk({k: v for k, v in old.items() if k != "checks"}, ""))
    new_rest = dict(_walk({k: v for k, v in new.items() if k != "checks"}, ""))
    for path in sorted(set(old_rest) | set(new_rest)):
        a, b = old_rest.get(path, _MISSING), new_rest.get(path, _MISSING)
        if a != b:
            other.append({"field": path, "old": _show(a), "new": _show(b)})
    return {
        "thresholds": thresholds,
        "loosened": [t["check"] for t in thresholds if t["change"] in ("loosened", "removed")],
        "data": data,
        "model": model,
        "other": other,
        "unchanged": not (thresholds or data or model or other),
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as plain text lines, for ``modelcert approve|decline`` (the page renders the same dict)."""
    who = " ".join(str(x) for x in (summary.get("model"), summary.get("version")) if x) or "unknown model"
    lines = [f"Before you sign run {summary['run_id']} ({who}):"]
    policy = summary.get("policy")
    lines.append(f"  policy: {policy['version']} (sha256 {policy['sha256'][:16]}…)" if policy else
                 "  policy: not recorded (this run did not record the policy it was judged under)")
    warnings = summary.get("warnings") or []
    lines.append(f"  warnings: {len(warnings)} non-blocking check(s) failed" if warnings else "  warnings: none")
    for w in warnings:
        subject = f" [{w['subject']}]" if w.get("subject") else ""
        value = "n/a" if w.get("value") is None else _num(w["value"])
        lines.append(f"    - {w['check']}{subject} = {value}, bar {w['text']}")
    pending = summary.get("inconclusive") or []
    lines.append(f"  inconclusive: {len(pending)} check(s) whose interval straddles the bar (the data cannot tell)"
                 if pending else "  inconclusive: none")
    for w in pending:
        subject = f" [{w['subject']}]" if w.get("subject") else ""
        ci = w.get("ci95")
        interval = f" (95% interval {_num(ci[0])} … {_num(ci[1])})" if isinstance(ci, list) and len(ci) == 2 else ""
        lines.append(f"    - {w['check']}{subject} = {_num(w['value']) if w.get('value') is not None else 'n/a'}"
                     f"{interval}, bar {w['text']}" + ("" if w.get("required") else " (warning only)"))
    blocking = [f for f in summary.get("findings") or [] if f["blocking"] and f["status"] == "open"]
    if blocking:
        lines.append(f"  findings to accept before approval: {len(blocking)}")
        lines.extend(f"    - {f['id']} {f['key']} ({f['severity']}, {f['verdict']}): by a {f['accept_role']}"
                     for f in blocking)
    waived = summary.get("waived") or []
    lines.append(f"  waived (required: false): {len(waived)}" if waived else "  waived (required: false): none")
    lines.extend(f"    - {w['check']}: {w['text']}" for w in waived)
    base, diff = summary.get("baseline"), summary.get("spec_diff")
    if not base or not diff:
        lines.append(f"  spec diff: first certification of {summary.get('model') or 'this model'} (nothing to compare)")
    else:
        lines.append(f"  spec diff against the spec certified {str(base['certified_at'])[:16]} for version "
                     f"{base['version']} (run {base['run_id']}, certificate {base['certificate_status']}):")
        if diff["unchanged"]:
            lines.append("    unchanged: same thresholds, data, model and spec fields")
        for t in diff["thresholds"]:
            lines.append(f"    {t['change']}: {t['check']}: {t['old_text']} → {t['new_text']}")
        if not diff["unchanged"]:
            if not diff["thresholds"]:
                lines.append("    thresholds: unchanged")
            lines.extend(f"    data changed: {x['dataset']} {(x['old_sha256'] or 'absent')[:12]} → "
                         f"{(x['new_sha256'] or 'absent')[:12]}" for x in diff["data"])
            if not diff["data"]:
                lines.append("    data: unchanged")
            model = diff["model"]
            lines.append(f"    model changed: {(model['old_sha256'] or 'absent')[:12]} → "
                         f"{(model['new_sha256'] or 'absent')[:12]}"
                         if model else "    model: unchanged")
            lines.extend(f"    field {o['field']}: {o['old']} → {o['new']}" for o in diff["other"])
    lines.append(f"  evidence digest {summary['evidence_digest']}")
    return lines


# --------------------------------------------------------------------------------------------- thresholds
def _threshold_changes(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per check whose bar moved. A threshold mapping is compared as a whole (min/max/abs_max/
    between/required); a metric dropped from the spec is ``removed`` (no longer checked: looser), a new one
    ``added``. Settings that are not thresholds (attacks, sample sizes, columns) are ``changed``."""
    old_leaves, new_leaves = dict(_walk(old, "checks")), dict(_walk(new, "checks"))
    out: list[dict[str, Any]] = []
    for path in sorted(set(old_leaves) | set(new_leaves)):
        a, b = old_leaves.get(path, _MISSING), new_leaves.get(path, _MISSING)
        if a == b:
            continue
        if a is _MISSING or b is _MISSING:
            change: Change = "added" if a is _MISSING else "removed"
        elif _is_threshold(a) and _is_threshold(b):
            change = compare_thresholds(a, b)
        elif path in LARGER_IS_LOOSER and _number(a) and _number(b):
            change = "loosened" if b > a else "tightened"
        elif path.endswith(".required") and isinstance(a, bool) and isinstance(b, bool):
            change = "loosened" if a and not b else "tightened"
        else:
            change = "changed"
        out.append({"check": path, "change": change, "old": _raw(a), "new": _raw(b),
                    "old_text": _text(a), "new_text": _text(b)})
    return out


def compare_thresholds(old: dict[str, Any], new: dict[str, Any]) -> Change:
    """Whether the bar ``new`` is looser or tighter than ``old`` (``changed`` when it moved both ways)."""
    looser = tighter = False

    def move(loosens: bool) -> None:
        nonlocal looser, tighter
        looser, tighter = looser or loosens, tighter or not loosens

    for key, larger_is_looser in (("min", False), ("max", True), ("abs_max", True)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if a is None or b is None:
            move(b is None)  # a bound dropped loosens, a bound added tightens
        else:
            move((b > a) == larger_is_looser)
    a_between, b_between = old.get("between"), new.get("between")
    if a_between != b_between:
        if not a_between or not b_between:
            move(not b_between)
        else:
            if b_between[0] != a_between[0]:
                move(b_between[0] < a_between[0])
            if b_between[1] != a_between[1]:
                move(b_between[1] > a_between[1])
    a_req, b_req = old.get("required", True), new.get("required", True)
    if a_req != b_req:
        move(not b_req)
    if looser and tighter:
        return "changed"
    return "loosened" if looser else "tightened" if tighter else "changed"


def threshold_text(threshold: Any) -> str:
    """{"min": 0.8, "max": 1.25} -> "≥ 0.8 and ≤ 1.25"; "(warning only)" when not required."""
    if not isinstance(threshold, dict):
        return _show(threshold) if threshold is not None else "—"
    parts = []
    for key, sign in (("min", "≥"), ("max", "≤"), ("abs_max", "|x| ≤")):
        if threshold.get(key) is not None:
            parts.append(f"{sign} {_num(threshold[key])}")
    between = threshold.get("between")
    if isinstance(between, (list, tuple)) and len(between) == 2:
        parts.append(f"in [{_num(between[0])}, {_num(between[1])}]")
    text = " and ".join(parts) or "—"
    return text + (" (warning only)" if threshold.get("required") is False else "")


# --------------------------------------------------------------------------------------------- helpers
class _Missing:
    def __repr__(self) -> str:
        return "absent"


_MISSING: Any = _Missing()


def _walk(node: Any, prefix: str) -> list[tuple[str, Any]]:
    """Leaves of a spec by dotted path; a threshold mapping is one leaf (it is judged as a whole), an empty
    mapping none (what it gains or loses shows up as its own leaves)."""
    if isinstance(node, dict) and not node:
        return []
    if isinstance(node, dict) and not _is_threshold(node):
        out: list[tuple[str, Any]] = []
        for key in sorted(node, key=str):
            out.extend(_walk(node[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return [(prefix, node)]


def _is_threshold(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in BOUND_KEYS)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sha(entry: Any) -> str | None:
    return str(entry["sha256"]) if isinstance(entry, dict) and entry.get("sha256") else None


def _num(value: Any) -> str:
    if _number(value) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}" if _number(value) else _show(value)


def _raw(value: Any) -> Any:
    """A threshold or number as stored (bounded by the spec schema); anything else as bounded text."""
    if value is _MISSING:
        return None
    return value if _is_threshold(value) or _number(value) or isinstance(value, bool) else _show(value)


def _text(value: Any) -> str:
    if value is _MISSING:
        return "absent"
    return threshold_text(value) if _is_threshold(value) else _show(value)


def _show(value: Any) -> str:
    """A spec value as bounded text (specs are user input)."""
    if value is _MISSING:
        return "absent"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return shorten(text, VALUE_CHARS)
