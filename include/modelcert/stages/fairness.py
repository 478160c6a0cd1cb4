"""Group fairness per category: every group of every protected attribute (and declared intersection) against
the attribute's reference group, with 95% intervals and confidence-aware verdicts.

Groups (:mod:`modelcert.fairness_groups`): every category of a categorical attribute is a group (the
``privileged`` values together are the reference group, or ``reference: max_rate`` takes the judged group with
the highest favorable selection rate, as NYC Local Law 144 does); numeric attributes are cut into declared bands or
a privileged range; ``data.intersections`` combine 2-3 attributes. Missing values form the ``unknown`` group.
A group under ``data.min_group_size`` rows or ``data.min_group_share`` of the rows, and the unknown group, are
reported with their counts and rates but *excluded*: never judged, never a reference, never in an impact ratio.

Metric definitions are AIF360's (``ClassificationMetric`` / ``BinaryLabelDatasetMetric``), relative to the
*favorable* outcome: ``ctx.labels()`` encodes the positive class as 1, and the favorable outcome is the positive
class (credit granted) or not (COMPAS: favorable = does not reoffend = "low risk" prediction). Selection rate =
P(favorable prediction); TPR = P(favorable prediction | truly favorable); FPR = P(favorable prediction | truly
unfavorable); every difference is group - reference, the ratio group / reference. They are computed from per-group
confusion counts in numpy (tests check them against AIF360's ClassificationMetric and Fairlearn's MetricFrame to
1e-9); AIF360 objects are not built per run, because AIF360's module-level memoize cache keeps every metric object
alive (~8.5 MiB per run in a long-lived worker).

ProPublica's COMPAS rates are relative to the *positive* prediction (labelled medium/high risk) and the positive
label (reoffended): their FPR (high risk among non-reoffenders) is the favorable-convention FNR here, and their FNR
(low risk among reoffenders) is the favorable-convention FPR. The summary carries both readings per group
(``positive_class`` rates) so the published numbers are recognisable.

Intervals and verdicts: :mod:`modelcert.stats` (Wilson / Newcombe / Katz-log where a closed form exists, else the
count bootstrap; a fail needs its Holm- or BH-adjusted p-value below alpha, otherwise it is inconclusive).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np

from modelcert import fairness_groups as fg
from modelcert import stats
from modelcert.context import EvalContext
from modelcert.safe_yaml import clip
from modelcert.spec import FAIRNESS_METRICS
from modelcert.stages.base import Check, RequiredCheck, StageOutcome, outcome, threshold_requirements
from modelcert.stages.performance import ECE_BINS
from modelcert.thresholds import Threshold

#: check_results.subject is a 256-character column.
SUBJECT_MAX = 256
_WHAT = {
    "disparate_impact": "selection rate group / reference (impact ratio)",
    "statistical_parity_difference": "selection rate group - reference",
    "equal_opportunity_difference": "TPR group - reference",
    "average_odds_difference": "mean of the FPR and TPR differences (group - reference)",
    "false_positive_rate_difference": "FPR group - reference",
    "false_negative_rate_difference": "FNR group - reference",
    "base_rate_difference": "favorable base rate in the true labels, group - reference (before any model)",
}
#: Which pair of counts each metric compares (numerator cells, denominator cells of [TP, FP, FN, TN]) and how,
#: for the analytic interval; average odds has no closed form (bootstrap).
_ANALYTIC: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]] = {
    "disparate_impact": ((0, 1), (0, 1, 2, 3), "ratio"),
    "statistical_parity_difference": ((0, 1), (0, 1, 2, 3), "diff"),
    "equal_opportunity_difference": ((0,), (0, 2), "diff"),
    "false_positive_rate_difference": ((1,), (1, 3), "diff"),
    "false_negative_rate_difference": ((2,), (0, 2), "diff"),
    "base_rate_difference": ((0, 2), (0, 1, 2, 3), "diff"),
}
CONVENTION = (
    "AIF360 favorable-label convention: rates are relative to the favorable outcome. selection rate = P(favorable "
    "prediction); TPR = P(favorable prediction | truly favorable); FPR = P(favorable prediction | truly "
    "unfavorable); FNR = 1 - TPR; precision = P(truly favorable | favorable prediction). Differences are group - "
    "reference, disparate_impact is group / reference. When the favorable outcome is not the positive class "
    "(COMPAS: favorable = does not reoffend), the positive-class rates (ProPublica's reading: FPR = labelled high "
    "risk among non-reoffenders) are in each group's positive_class entry: positive-class FPR = favorable FNR, "
    "positive-class FNR = favorable FPR.")


class _DropOptionalDependencyWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "will be unavailable" not in record.getMessage()


def import_aif360() -> tuple[Any, Any, Any]:
    """Import AIF360 without its optional-dependency chatter (tensorflow, fairlearn, inFairness …).

    AIF360 logs those through the root logger with ``logging.warning``, which would also call
    ``basicConfig()`` on an unconfigured root logger; a temporary NullHandler and filter prevent both.
    (The stage itself does not build AIF360 objects; the tests cross-check its numbers with AIF360.)"""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    flt = _DropOptionalDependencyWarnings()
    if guard is not None:
        root.addHandler(guard)
    root.addFilter(flt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from aif360.datasets import BinaryLabelDataset
            from aif360.metrics import BinaryLabelDatasetMetric, ClassificationMetric
    finally:
        root.removeFilter(flt)
        if guard is not None:
            root.removeHandler(guard)
    return BinaryLabelDataset, BinaryLabelDatasetMetric, ClassificationMetric


def _num(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) or math.isinf(v) else v


# ------------------------------------------------------------------------------- metrics from counts
def confusion_counts(y_fav: np.ndarray, p_fav: np.ndarray) -> np.ndarray:
    """[TP, FP, FN, TN] relative to the favorable outcome."""
    return np.array([np.sum(y_fav & p_fav), np.sum(~y_fav & p_fav), np.sum(y_fav & ~p_fav), np.sum(~y_fav & ~p_fav)],
                    dtype=float)


def rates(c: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group rates from counts of shape (..., 4), favorable convention (NaN where undefined)."""
    c = np.asarray(c, dtype=float)
    tp, fp, fn, tn = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    n = tp + fp + fn + tn
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "selection_rate": (tp + fp) / n,
            "base_rate": (tp + fn) / n,
            "tpr": tp / (tp + fn),
            "fpr": fp / (fp + tn),
            "fnr": fn / (tp + fn),
            "precision": tp / (tp + fp),
        }


def metrics_from_counts(reference: np.ndarray, group: np.ndarray) -> dict[str, np.ndarray]:
    """The seven fairness metrics of ``group`` against ``reference`` from counts of shape (..., 4) (they
    broadcast); same definitions as AIF360 (unprivileged = the group, privileged = the reference)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r, g = rates(reference), rates(group)
        return {
            "disparate_impact": g["selection_rate"] / r["selection_rate"],
            "statistical_parity_difference": g["selection_rate"] - r["selection_rate"],
            "equal_opportunity_difference": g["tpr"] - r["tpr"],
            "average_odds_difference": 0.5 * ((g["fpr"] - r["fpr"]) + (g["tpr"] - r["tpr"])),
            "false_positive_rate_difference": g["fpr"] - r["fpr"],
            "false_negative_rate_difference": g["fnr"] - r["fnr"],
            "base_rate_difference": g["base_rate"] - r["base_rate"],
        }


def grouped_auc(codes: np.ndarray, n_groups: int, score: np.ndarray, y: np.ndarray, *,
                order: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC of ``score`` for label ``y`` (0/1) within each group (Mann-Whitney, ties counted half); NaN for a
    group without both classes. ``order`` (``argsort(score, kind="stable")``) can be shared between groupings:
    each grouping then costs one stable radix sort of its small-integer codes, not a sort of the scores."""
    if order is None:
        order = np.argsort(score, kind="stable")
    s = score[order]
    level = np.concatenate([[0], np.cumsum(s[1:] != s[:-1])])
    c = codes[order]
    c = c.astype(np.int16) if n_groups < 2**15 else c  # numpy's stable sort of int16 is a radix sort
    perm = np.argsort(c, kind="stable")  # by group, and by score within a group
    g, lv, yy = c[perm].astype(np.int64), level[perm], y[order][perm].astype(float)
    starts = np.concatenate([[0], np.flatnonzero((np.diff(g) != 0) | (np.diff(lv) != 0)) + 1])
    pos = np.add.reduceat(yy, starts)
    neg = np.diff(np.concatenate([starts, [len(yy)]])) - pos
    group = g[starts]
    cum = np.concatenate([[0.0], np.cumsum(neg)])
    first = np.searchsorted(group, group, side="left")
    below = cum[:-1] - cum[first]  # negatives of the same group with a lower score
    wins = np.bincount(group, weights=pos * (below + 0.5 * neg), minlength=n_groups)
    p_g = np.bincount(group, weights=pos, minlength=n_groups)
    n_g = np.bincount(group, weights=neg, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((p_g > 0) & (n_g > 0), wins / (p_g * n_g), np.nan)


def grouped_ece(codes: np.ndarray, n_groups: int, prob: np.ndarray, y: np.ndarray, *,
                bins: np.ndarray | None = None) -> np.ndarray:
    """Expected calibration error per group with the performance stage's binning (``ECE_BINS`` equal-width bins
    on [0, 1], the same ``searchsorted`` assignment): sum over bins of |sum of probabilities - positives| / n.
    ``bins`` (each row's bin) can be shared between groupings."""
    if bins is None:
        bins = np.searchsorted(np.linspace(0.0, 1.0, ECE_BINS + 1)[1:-1], prob)
    key = codes.astype(np.int64) * ECE_BINS + bins
    size = n_groups * ECE_BINS
    gap = np.abs(np.bincount(key, weights=prob, minlength=size) - np.bincount(key, weights=y.astype(float),
                                                                             minlength=size))
    n = np.bincount(codes, minlength=n_groups).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, gap.reshape(n_groups, ECE_BINS).sum(axis=1) / n, np.nan)


def _scaled(score: np.ndarray | None) -> np.ndarray | None:
    """Scores as probabilities for calibration: as is in [0, 1], else min-max scaled (as the performance stage)."""
    if score is None:
        return None
    s = np.asarray(score, dtype=float)
    lo, hi = float(s.min()), float(s.max())
    if lo >= 0.0 and hi <= 1.0:
        return s
    return (s - lo) / (hi - lo) if hi > lo else np.full_like(s, 0.5)


def _f(v: Any) -> float | None:
    return _num(v) if v is not None else None


def _subject(name: str, group: str) -> str:
    """``race=African-American``, bounded to the stored subject's 256 characters (the summary keeps the full
    group label; a category value is data and may be long)."""
    return clip(f"{name}={group}" if group else name, SUBJECT_MAX)


def _undefined_reason(metric: str) -> str:
    if metric == "disparate_impact":
        return "the reference group has no favorable predictions, so the ratio is undefined"
    if metric in ("equal_opportunity_difference", "false_negative_rate_difference"):
        return "a group has no truly favorable rows, so its TPR/FNR is undefined"
    if metric == "false_positive_rate_difference":
        return "a group has no truly unfavorable rows, so its FPR is undefined"
    if metric == "average_odds_difference":
        return "a group's TPR or FPR is undefined (no truly favorable or no truly unfavorable rows)"
    return "a group has no rows"


class FairnessStage:
    name = "fairness"
    #: Whose metric definitions the numbers follow (cross-checked in the tests); recorded with its version.
    library = "aif360"

    def run(self, ctx: EvalContext) -> StageOutcome:
        spec = ctx.spec
        data = spec.data
        thresholds: dict[str, Threshold] = dict(spec.checks.fairness)
        st = stats.settings(spec)
        alpha, mt = st["alpha"], st["multiple_testing"]

        y = ctx.labels("test")
        y_pred, raw_score = ctx.predictions("test")
        fav = 1 if ctx.favorable_is_positive else 0
        y_fav = y == fav
        p_fav = y_pred == fav
        df = ctx.frame("test")
        ctx.require_columns(df, list(data.protected_attributes), dataset="test",
                            field_name="data.protected_attributes")
        prob = _scaled(raw_score)
        shared: dict[str, np.ndarray] = {}
        if prob is not None:
            shared = {"order": np.argsort(prob, kind="stable"),
                      "bins": np.searchsorted(np.linspace(0.0, 1.0, ECE_BINS + 1)[1:-1], prob)}
        rng = np.random.default_rng(st["seed"])
        total = len(y)

        evaluated = [self._grouping(g, y=y, y_fav=y_fav, p_fav=p_fav, prob=prob, shared=shared, total=total,
                                    rng=rng, resamples=st["resamples"], thresholds=thresholds,
                                    min_size=data.min_group_size, min_share=data.min_group_share, fav=fav)
                     for g in fg.groupings(df, dict(data.protected_attributes), [list(c) for c in data.intersections])]

        # Multiple-testing control over every judged comparison of the stage with a p-value.
        judged = [c for a in evaluated for c in a["comparisons"] if c["threshold"] is not None]
        with_p = [c for c in judged if c["p_value"] is not None]
        for c, p_adj in zip(with_p, stats.adjust([c["p_value"] for c in with_p], method=mt, alpha=alpha),
                            strict=True):
            c["p_adjusted"] = p_adj
        for c in judged:
            t: Threshold = c["_threshold"]
            interval = t.interval_verdict(*(c["ci95"] or (None, None))) if c["value"] is not None else "fail"
            c["interval_verdict"] = interval
            c["verdict"] = (stats.controlled_verdict(interval, c["p_adjusted"], alpha) if c["value"] is not None
                            else "fail")

        checks: list[Check] = []
        attributes: dict[str, Any] = {}
        why_missing = ""
        for a in evaluated:
            checks += a.pop("_checks")
            for c in a["comparisons"]:
                checks.append(self._comparison_check(a, c, alpha=alpha, mt=mt, n_judged=len(with_p)))
                c.pop("_threshold", None)
            if a.pop("_no_comparison"):
                why_missing = why_missing or a["_why"]
            a.pop("_why", None)
            attributes[a.pop("_name")] = a

        summary = {
            "rows": int(total),
            "favorable_label": data.favorable_label,
            "positive_label": data.positive_label,
            "favorable_in_0_1_encoding": fav,
            "convention": CONVENTION,
            "min_group_size": data.min_group_size,
            "min_group_share": data.min_group_share,
            "statistics": {"alpha": alpha, "multiple_testing": mt, "comparisons": len(with_p),
                           "bootstrap": {"resamples": st["resamples"], "seed": st["seed"],
                                         "method": stats.BOOTSTRAP_METHOD},
                           "verdict_rule": "95% interval decides pass/fail/inconclusive; a fail needs its "
                                           f"{'Holm' if mt == 'holm' else 'Benjamini-Hochberg'}-adjusted one-sided "
                                           f"p-value (H0: the metric meets the bound) below {alpha:g}, else it is "
                                           "inconclusive"},
            "attributes": attributes,
        }
        requires = tuple(RequiredCheck(name=r.name, field=r.field, why_missing=why_missing)
                         for r in threshold_requirements("checks.fairness", thresholds))
        return outcome(self.name, checks, library=self.library, summary=summary, requires=requires)

    # ----------------------------------------------------------------------------------------------- one grouping
    def _grouping(self, g: fg.Grouping, *, y: np.ndarray, y_fav: np.ndarray, p_fav: np.ndarray,
                  prob: np.ndarray | None, shared: dict[str, np.ndarray], total: int, rng: np.random.Generator,
                  resamples: int, thresholds: dict[str, Threshold], min_size: int, min_share: float,
                  fav: int) -> dict[str, Any]:
        n_groups = len(g.labels)
        counts = fg.counts_by_group(g.codes, n_groups, y_fav, p_fav)
        n = counts.sum(axis=1)
        r = rates(counts)
        auc = grouped_auc(g.codes, n_groups, prob, y, order=shared["order"]) if prob is not None else None
        ece = grouped_ece(g.codes, n_groups, prob, y, bins=shared["bins"]) if prob is not None else None
        sel_lo, sel_hi = stats.wilson(counts[:, 0] + counts[:, 1], n)

        excluded: dict[int, str] = {}
        for i in range(n_groups):
            share = n[i] / total
            if i == g.unknown:
                excluded[i] = "unknown value (missing or empty): reported, never judged"
            elif n[i] < min_size:
                excluded[i] = f"{int(n[i])} rows < data.min_group_size {min_size}"
            elif share < min_share:
                excluded[i] = f"share {share:.2%} < data.min_group_share {min_share:g}"
        judged_groups = [i for i in range(n_groups) if i not in excluded]

        checks: list[Check] = []
        size_threshold = Threshold(min=min_size)
        reference = g.reference
        reference_problem = ""
        if reference is None:
            finite = [i for i in judged_groups if np.isfinite(r["selection_rate"][i])]
            if finite:
                reference = max(finite, key=lambda i: (r["selection_rate"][i], -i))
            else:
                reference_problem = (f"{g.name}: no group has at least data.min_group_size {min_size} rows and "
                                     f"data.min_group_share {min_share:g} of the rows, so no reference can be chosen")
        elif reference in excluded:
            reference_problem = (f"{g.name}: the reference group {g.labels[reference]} is excluded "
                                 f"({excluded[reference]}); no group can be compared with it")
        if reference_problem:
            ref_n = int(n[reference]) if reference is not None else int(n[:-1].max(initial=0))
            need = Threshold(min=max(min_size, math.ceil(min_share * total)))
            checks.append(Check.judged("group_size", ref_n, need,
                                       subject=_subject(g.name, g.labels[reference]) if reference is not None
                                       else _subject(g.name, ""),
                                       message=reference_problem,
                                       detail={"min_group_size": min_size, "min_group_share": min_share}))

        groups_out: list[dict[str, Any]] = []
        for i in range(n_groups):
            if n[i] == 0 and (i == g.unknown or g.kind == "intersection"):
                continue  # no such combination / no unknown value in the data
            subject = _subject(g.name, g.labels[i])
            share = float(n[i] / total)
            tp, fp, fn, tn = (int(x) for x in counts[i])
            groups_out.append({
                "group": g.labels[i], "n": int(n[i]), "share": share, "is_reference": i == reference,
                "excluded_because": excluded.get(i),
                "base_rate": _f(r["base_rate"][i]), "selection_rate": _f(r["selection_rate"][i]),
                "tpr": _f(r["tpr"][i]), "fpr": _f(r["fpr"][i]), "fnr": _f(r["fnr"][i]),
                "precision": _f(r["precision"][i]),
                "auc": _f(auc[i]) if auc is not None else None,
                "calibration_error": _f(ece[i]) if ece is not None else None,
                "counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
                "selection_rate_ci95": (None if not np.isfinite(sel_lo[i]) else [float(sel_lo[i]), float(sel_hi[i])]),
                "selection_rate_ci_method": "wilson",
                "positive_class": self._positive_class(counts[i], fav),
            })
            if reference_problem and i == reference:
                continue  # judged (and failed) above
            if i in excluded:
                checks.append(Check.info(
                    "group_size", int(n[i]), subject=subject,
                    message=f"{subject}: {int(n[i])} rows ({share:.2%}), excluded from the verdict and from impact "
                            f"ratios: {excluded[i]}",
                    detail={"excluded_because": excluded[i], "share": share, "counts": groups_out[-1]["counts"],
                            "selection_rate": groups_out[-1]["selection_rate"]}))
            else:
                checks.append(Check.judged(
                    "group_size", int(n[i]), size_threshold, subject=subject,
                    message=f"{subject}: {int(n[i])} rows ({share:.2%}; data.min_group_size {min_size}, "
                            f"data.min_group_share {min_share:g})",
                    detail={"share": share, "is_reference": i == reference}))

        comparisons: list[dict[str, Any]] = []
        others = [i for i in judged_groups if i != reference]
        if not reference_problem and reference is not None and others:
            comparisons = self._compare(g, counts, reference, others, rng=rng, resamples=resamples,
                                        thresholds=thresholds)
        why = ""
        if not comparisons:
            why = reference_problem or (f"{g.name}: no group besides the reference "
                                        f"{g.labels[reference] if reference is not None else ''} is large enough "
                                        "to be judged")
        return {"_name": g.name, "kind": g.kind, "columns": list(g.columns),
                "reference": g.labels[reference] if reference is not None else None,
                "reference_rule": g.reference_rule, "definition": g.definition,
                "groups": groups_out, "comparisons": comparisons, "_checks": checks,
                "_no_comparison": not comparisons, "_why": why}

    @staticmethod
    def _positive_class(c: np.ndarray, fav: int) -> dict[str, float | None]:
        """The group's rates relative to the positive class and positive label (ProPublica's reading)."""
        pc = c if fav == 1 else c[[3, 2, 1, 0]]  # swap favorable/unfavorable: TP<->TN, FP<->FN
        rr = rates(pc)
        return {"selection_rate": _f(rr["selection_rate"]), "tpr": _f(rr["tpr"]), "fpr": _f(rr["fpr"]),
                "fnr": _f(rr["fnr"])}

    @staticmethod
    def _compare(g: fg.Grouping, counts: np.ndarray, reference: int, others: list[int], *,
                 rng: np.random.Generator, resamples: int, thresholds: dict[str, Threshold]) -> list[dict[str, Any]]:
        """Every metric of every judged group against the reference: point, interval (analytic where a closed form
        exists, else bootstrap), bootstrap interval, and the p-value used for multiple-testing control."""
        idx = [reference, *others]
        sub = counts[idx].astype(float)
        point = metrics_from_counts(sub[0], sub[1:])
        boot_counts = stats.bootstrap_counts(counts[idx], resamples=resamples, rng=rng)  # (R, 1+K, 4)
        boot = metrics_from_counts(boot_counts[:, :1, :], boot_counts[:, 1:, :])  # (R, K) each
        out: list[dict[str, Any]] = []
        for metric in FAIRNESS_METRICS:
            b_lo, b_hi, valid = stats.percentile_ci(boot[metric])
            is_ratio = metric == "disparate_impact"
            se = stats.bootstrap_se(boot[metric], log=is_ratio)
            a_lo = a_hi = None
            if metric in _ANALYTIC:
                num, den, compare = _ANALYTIC[metric]
                c1, n1 = sub[1:, list(num)].sum(axis=1), sub[1:, list(den)].sum(axis=1)
                c2 = np.full(len(others), sub[0, list(num)].sum())
                n2 = np.full(len(others), sub[0, list(den)].sum())
                a_lo, a_hi = stats.two_rates(c1, n1, c2, n2, compare)  # type: ignore[arg-type]
            t = thresholds.get(metric)
            for k, i in enumerate(others):
                value = _num(point[metric][k])
                method, ci = "bootstrap", None
                if a_lo is not None and np.isfinite(a_lo[k]) and np.isfinite(a_hi[k]):
                    method = "katz_log" if is_ratio else "newcombe"
                    ci = [float(a_lo[k]), float(a_hi[k])]
                elif np.isfinite(b_lo[k]):
                    ci = [float(b_lo[k]), float(b_hi[k])]
                boot_ci = [float(b_lo[k]), float(b_hi[k])] if np.isfinite(b_lo[k]) else None
                p = (stats.p_value_outside(value, _num(se[k]), t, log=is_ratio) if t is not None and value is not None
                     else None)
                out.append({
                    "group": g.labels[i], "metric": metric, "value": value,
                    "ci95": None if value is None else ci, "ci_method": method,
                    "bootstrap_ci95": boot_ci, "bootstrap_valid_share": float(valid[k]),
                    "p_value": p, "p_adjusted": None,
                    "threshold": t.describe() if t is not None else None,
                    "verdict": "info" if t is None else None,
                    "_threshold": t,
                })
        return out

    @staticmethod
    def _comparison_check(a: dict[str, Any], c: dict[str, Any], *, alpha: float, mt: str, n_judged: int) -> Check:
        name, metric = a["_name"], c["metric"]
        subject = _subject(name, c["group"])
        ref = a["reference"]
        v, ci = c["value"], c["ci95"]
        ci_text = f", 95% CI [{ci[0]:.3g}, {ci[1]:.3g}] ({c['ci_method']})" if ci else ""
        detail = {"definition": _WHAT[metric], "reference": ref, "reference_rule": a["reference_rule"],
                  "ci_method": c["ci_method"], "ci_method_text": stats.ANALYTIC_METHODS[c["ci_method"]],
                  "bootstrap_ci95": c["bootstrap_ci95"], "p_value": c["p_value"], "p_adjusted": c["p_adjusted"]}
        t: Threshold | None = c["_threshold"]
        if t is None:
            msg = (f"{metric} for {subject} vs {ref} is undefined: {_undefined_reason(metric)}" if v is None else
                   f"{metric} for {subject} vs {ref}: {v:.4g}{ci_text} (informational: no bound in checks.fairness)")
            return Check.info(metric, v, subject=subject, message=msg, detail={**detail, "ci95": ci})
        detail.update({"multiple_testing": mt, "alpha": alpha, "comparisons": n_judged,
                       "interval_verdict": c["interval_verdict"]})
        verdict = c["verdict"]
        if v is None:
            msg = (f"{metric} for {subject} vs {ref} is undefined: {_undefined_reason(metric)}; "
                   f"the spec requires {t.text()}")
        else:
            msg = f"{metric} for {subject} vs {ref}: {v:.4g}{ci_text} (needs {t.text()}): {verdict}"
            if c["interval_verdict"] == "fail" and verdict == "inconclusive":
                p_adj = c["p_adjusted"]
                msg += (f" — the interval is outside the bound, but the {mt}-adjusted p-value "
                        f"{'n/a' if p_adj is None else f'{p_adj:.3g}'} over {n_judged} comparisons is not below "
                        f"alpha {alpha:g}")
        return Check.interval_judged(metric, v, ci, t, verdict=verdict, subject=subject, message=msg, detail=detail)


STAGE = FairnessStage()
