"""The explainability stage's evidence as tables: "what changed" against the champion / benchmark (side by side),
proxies, weak slices and importance. One builder for the text report (``modelcert report``) and the run page, so
the two always show the same rows; each table is {"id", "title", "note", "columns", "rows"} with rows of strings.
"""

from __future__ import annotations

from typing import Any


def _n(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return str(value)


def _ci(ci: Any) -> str:
    if not ci or ci[0] is None:
        return "n/a"
    return f"{float(ci[0]):.3f} .. {float(ci[1]):.3f}"


def _bound(bound: Any) -> str:
    if not isinstance(bound, dict):
        return ""
    parts = [f"{k} {_n(v)}" for k, v in bound.items() if k in ("min", "max", "abs_max") and v is not None]
    return ", ".join(parts)


def explainability_tables(summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Tables from the stage summary (empty when the stage has not run); a part that did not apply is a table
    with its reason as the note and no rows."""
    if not summary:
        return []
    tables: list[dict[str, Any]] = []
    cmp = summary.get("comparison") or {}
    refs = ", ".join(f"{r.get('label')} (sha256 {str(r.get('sha256') or '')[:12]})"
                     for r in cmp.get("references") or [])
    tables.append({
        "id": "explain-comparison", "title": "What changed: champion / benchmark vs this model",
        "note": cmp.get("not_applicable") or (
            f"against {refs or 'nothing'}; drop = reference minus this model (positive = worse), paired bootstrap "
            f"{cmp.get('resamples')} resamples, {cmp.get('multiple_testing')} across {len(cmp.get('table') or [])} "
            f"comparisons" + ("; not compared: " + "; ".join(cmp["problems"]) if cmp.get("problems") else "")),
        "columns": ["metric", "subject", "reference", "this model", "drop", "95% CI of drop", "bound", "verdict"],
        "rows": [[r["metric"], r["subject"], _n(r["reference"]), _n(r["challenger"]), _n(r["drop"], 3),
                  _ci(r.get("ci95")), _bound(r.get("bound")), r["verdict"]] for r in cmp.get("table") or []],
    })
    proxies = summary.get("proxies") or {}
    tables.append({
        "id": "explain-proxies", "title": "Proxies of protected attributes",
        "note": "ROC AUC of a probe predicting the privileged group from the features (0.5 = no information); "
                "association: Cramér's V",
        "columns": ["attribute", "proxy AUC", "95% CI", "strongest proxies", "rows"],
        "rows": [[attr, _n(p.get("auc"), 3), _ci(p.get("ci95")),
                  ", ".join(f"{a['feature']} ({a['cramers_v']:.2f})" for a in (p.get("associations") or [])[:3])
                  or (p.get("note") or ""), str(p.get("rows"))] for attr, p in proxies.items()],
    })
    sl = summary.get("slices") or {}
    shown = sl.get("weak_slices") or []
    tables.append({
        "id": "explain-slices", "title": "Weak slices",
        "note": sl.get("not_applicable") or (
            f"{sl.get('weak_count', 0)} weak of {sl.get('slices_tried', 0)} tried (min size "
            f"{sl.get('min_slice_size')}, BH FDR {sl.get('alpha')}); overall error rate "
            f"{_n(sl.get('overall_error_rate'), 3)}" + ("" if shown else "; the weakest tried are shown")),
        "columns": ["slice", "rows", "error rate", "95% CI", "difference", "adjusted p", "weak"],
        "rows": [[s["slice"], str(s["size"]), _n(s["error_rate"], 3), _ci(s["ci95"]), _n(s["difference"], 3),
                  _n(s["p_adjusted"], 3), "yes" if s["weak"] else "no"]
                 for s in (shown or (sl.get("weakest_tried") or [])[:5])],
    })
    imp = summary.get("importance") or {}
    groups = imp.get("by_group") or {}
    tables.append({
        "id": "explain-importance", "title": "Feature importance",
        "note": imp.get("not_applicable") or (f"{imp.get('method')} on {imp.get('sample_rows')} sampled rows "
                                              f"(seed {imp.get('seed')}); {imp.get('unit')}"),
        "columns": ["feature", "importance", "share", *[f"{a}: privileged / unprivileged share" for a in groups]],
        "rows": [[f["feature"], _n(f["importance"]), f"{f['share']:.0%}",
                  *[_group_shares(g, f["feature"]) for g in groups.values()]]
                 for f in (imp.get("features") or [])[:10]],
    })
    return tables


def _group_shares(group: dict[str, Any], feature: str) -> str:
    p = {r["feature"]: r["share"] for r in group.get("privileged") or []}
    u = {r["feature"]: r["share"] for r in group.get("unprivileged") or []}
    if feature not in p and feature not in u:
        return "-"
    return f"{p.get(feature, 0.0):.0%} / {u.get(feature, 0.0):.0%}"


def explainability_lines(summary: dict[str, Any] | None) -> list[str]:
    """The same tables as plain text lines, for the text report."""
    lines: list[str] = []
    for t in explainability_tables(summary):
        lines.append(f"{t['title']}: {t['note']}")
        if t["rows"]:
            widths = [max(len(str(x)) for x in col) for col in zip(t["columns"], *t["rows"], strict=True)]
            lines.append("    " + "  ".join(c.ljust(w) for c, w in zip(t["columns"], widths, strict=True)))
            lines.extend("    " + "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)) for r in t["rows"])
    return lines
