"""Group fairness with IBM AIF360: per protected attribute, privileged vs unprivileged group.

The metrics come from ``aif360.metrics.ClassificationMetric`` (predictions against true labels) and
``aif360.metrics.BinaryLabelDatasetMetric`` (true labels only, before any model: ``base_rate_difference``).

Favorable outcome. ``ctx.labels()`` encodes the *positive class* as 1. AIF360 reasons about the *favorable*
outcome, so both BinaryLabelDatasets get ``favorable_label`` = 1 when the favorable outcome is the positive
class (credit granted) and 0 otherwise (COMPAS: favorable = does not reoffend = "low risk" prediction). Every
rate is therefore relative to the favorable outcome, as in AIF360: selection rate = P(favorable prediction),
TPR = P(favorable prediction | truly favorable), FPR = P(favorable prediction | truly unfavorable).

A 95% bootstrap interval is attached to each metric: the per-group confusion counts are resampled
(multinomial within each group = resampling rows within groups, group sizes fixed), 200 seeded draws,
vectorised in numpy. AIF360 is not run per resample.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from modelcert.context import EvalContext
from modelcert.spec import FAIRNESS_METRICS, GroupRange
from modelcert.stages.base import Check, StageOutcome, outcome
from modelcert.thresholds import Threshold

BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0
GROUPS = ("privileged", "unprivileged")
_LABEL_COL = "__modelcert_label__"
_WHAT = {
    "disparate_impact": "selection rate unprivileged / privileged",
    "statistical_parity_difference": "selection rate unprivileged - privileged",
    "equal_opportunity_difference": "TPR unprivileged - privileged",
    "average_odds_difference": "mean of the FPR and TPR differences (unprivileged - privileged)",
    "false_positive_rate_difference": "FPR unprivileged - privileged",
    "false_negative_rate_difference": "FNR unprivileged - privileged",
    "base_rate_difference": "favorable base rate in the true labels, unprivileged - privileged (before any model)",
}


class _DropOptionalDependencyWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "will be unavailable" not in record.getMessage()


def import_aif360() -> tuple[Any, Any, Any]:
    """Import AIF360 without its optional-dependency chatter (tensorflow, fairlearn, inFairness …).

    AIF360 logs those through the root logger with ``logging.warning``, which would also call
    ``basicConfig()`` on an unconfigured root logger; a temporary NullHandler and filter prevent both."""
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


def _rates(c: np.ndarray) -> dict[str, np.ndarray]:
    tp, fp, fn, tn = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    n = tp + fp + fn + tn
    return {
        "selection_rate": (tp + fp) / n,
        "base_rate": (tp + fn) / n,
        "tpr": tp / (tp + fn),
        "fpr": fp / (fp + tn),
        "fnr": fn / (tp + fn),
    }


def metrics_from_counts(priv: np.ndarray, unpriv: np.ndarray) -> dict[str, np.ndarray]:
    """The seven fairness metrics from per-group counts (arrays of shape (..., 4)); same definitions as AIF360."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p, u = _rates(priv), _rates(unpriv)
        return {
            "disparate_impact": u["selection_rate"] / p["selection_rate"],
            "statistical_parity_difference": u["selection_rate"] - p["selection_rate"],
            "equal_opportunity_difference": u["tpr"] - p["tpr"],
            "average_odds_difference": 0.5 * ((u["fpr"] - p["fpr"]) + (u["tpr"] - p["tpr"])),
            "false_positive_rate_difference": u["fpr"] - p["fpr"],
            "false_negative_rate_difference": u["fnr"] - p["fnr"],
            "base_rate_difference": u["base_rate"] - p["base_rate"],
        }


def bootstrap_intervals(priv: np.ndarray, unpriv: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> dict[str, dict[str, Any]]:
    """95% percentile intervals: multinomial resampling of each group's confusion counts (fixed group sizes)."""
    rng = np.random.default_rng(seed)

    def draw(c: np.ndarray) -> np.ndarray:
        n = int(c.sum())
        return rng.multinomial(n, c / n, size=resamples).astype(float)

    boot = metrics_from_counts(draw(priv), draw(unpriv))
    out: dict[str, dict[str, Any]] = {}
    for name, values in boot.items():
        finite = values[np.isfinite(values)]
        if len(finite) < 0.9 * resamples:
            ci = None
        else:
            lo, hi = np.percentile(finite, [2.5, 97.5])
            ci = [float(lo), float(hi)]
        out[name] = {"ci95": ci, "resamples": resamples, "valid_resamples": int(len(finite)), "seed": seed,
                     "method": "percentile bootstrap, multinomial resampling of per-group confusion counts"}
    return out


def _describe_privileged(ctx: EvalContext, attribute: str) -> Any:
    priv = ctx.spec.data.protected_attributes[attribute].privileged
    if isinstance(priv, GroupRange):
        return {k: v for k, v in (("min", priv.min), ("max", priv.max)) if v is not None}
    return list(priv)


class FairnessStage:
    name = "fairness"
    library = "aif360"

    def run(self, ctx: EvalContext) -> StageOutcome:
        BinaryLabelDataset, BinaryLabelDatasetMetric, ClassificationMetric = import_aif360()
        spec = ctx.spec
        thresholds: dict[str, Threshold] = dict(spec.checks.fairness)
        min_size = spec.data.min_group_size

        y = ctx.labels("test")
        y_pred, _ = ctx.predictions("test")
        fav = 1 if ctx.favorable_is_positive else 0
        y_fav = y == fav
        p_fav = y_pred == fav

        checks: list[Check] = []
        attributes: dict[str, Any] = {}
        for attr in spec.data.protected_attributes:
            masks = ctx.group_masks(attr, "test")  # DataError naming the field when a group is empty
            priv_mask = masks["privileged"]
            privileged_def = _describe_privileged(ctx, attr)

            # --- AIF360: 1 = privileged, 0 = unprivileged; labels 0/1 with the favorable one declared.
            frame = pd.DataFrame({attr: priv_mask.astype(float), _LABEL_COL: y.astype(float)})
            ds_true = BinaryLabelDataset(df=frame, label_names=[_LABEL_COL], protected_attribute_names=[attr],
                                         favorable_label=float(fav), unfavorable_label=float(1 - fav))
            ds_pred = ds_true.copy(deepcopy=True)
            ds_pred.labels = y_pred.astype(float).reshape(-1, 1)
            groups = {"privileged_groups": [{attr: 1.0}], "unprivileged_groups": [{attr: 0.0}]}
            with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                dm = BinaryLabelDatasetMetric(ds_true, **groups)
                cm = ClassificationMetric(ds_true, ds_pred, **groups)
                values: dict[str, float | None] = {
                    "disparate_impact": _num(cm.disparate_impact()),
                    "statistical_parity_difference": _num(cm.statistical_parity_difference()),
                    "equal_opportunity_difference": _num(cm.equal_opportunity_difference()),
                    "average_odds_difference": _num(cm.average_odds_difference()),
                    "false_positive_rate_difference": _num(cm.false_positive_rate_difference()),
                    "false_negative_rate_difference": _num(cm.false_negative_rate_difference()),
                    "base_rate_difference": _num(dm.mean_difference()),
                }
                group_stats: dict[str, dict[str, Any]] = {}
                for g in GROUPS:
                    is_priv = g == "privileged"
                    group_stats[g] = {
                        "size": int(round(float(cm.num_instances(privileged=is_priv)))),
                        "base_rate": _num(cm.base_rate(privileged=is_priv)),
                        "selection_rate": _num(cm.selection_rate(privileged=is_priv)),
                        "true_positive_rate": _num(cm.true_positive_rate(privileged=is_priv)),
                        "false_positive_rate": _num(cm.false_positive_rate(privileged=is_priv)),
                        "false_negative_rate": _num(cm.false_negative_rate(privileged=is_priv)),
                    }

            counts = {"privileged": confusion_counts(y_fav[priv_mask], p_fav[priv_mask]),
                      "unprivileged": confusion_counts(y_fav[~priv_mask], p_fav[~priv_mask])}
            intervals = bootstrap_intervals(counts["privileged"], counts["unprivileged"])

            # --- group sizes (judged against data.min_group_size) and per-group rates (info)
            small: list[str] = []
            size_threshold = Threshold(min=min_size)
            for g in GROUPS:
                st = group_stats[g]
                subject = f"{attr}={g}"
                definition = (f"{attr} in {privileged_def}" if g == "privileged" else f"{attr} not in {privileged_def}")
                ok = st["size"] >= min_size
                if not ok:
                    small.append(f"{subject} has {st['size']} rows")
                checks.append(Check.judged(
                    "group_size", st["size"], size_threshold, subject=subject,
                    message=(f"{subject}: {st['size']} rows (data.min_group_size {min_size})" if ok else
                             f"{subject}: only {st['size']} rows, below data.min_group_size {min_size}; "
                             "the fairness metrics for this attribute are not reliable"),
                    detail={"group": definition}))
                for key in ("base_rate", "selection_rate", "true_positive_rate", "false_positive_rate",
                            "false_negative_rate"):
                    v = st[key]
                    checks.append(Check.info(
                        key, v, subject=subject,
                        message=f"{subject}: {key} {'n/a' if v is None else f'{v:.4g}'} "
                                "(relative to the favorable outcome)",
                        detail={"group": definition}))

            # --- the seven metrics: judged when the spec bounds them, info otherwise
            caveat = f" (caution: {'; '.join(small)} < data.min_group_size {min_size})" if small else ""
            for metric in FAIRNESS_METRICS:
                v = values[metric]
                detail = {"definition": _WHAT[metric], **intervals[metric],
                          "aif360": ("BinaryLabelDatasetMetric" if metric == "base_rate_difference"
                                     else "ClassificationMetric")}
                if v is None:
                    why = self._undefined_reason(metric, attr, group_stats)
                else:
                    why = ""
                ci = intervals[metric]["ci95"]
                ci_text = f", 95% CI [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""
                if metric in thresholds:
                    t = thresholds[metric]
                    msg = (f"{metric} for {attr} is undefined: {why}; the spec requires {t.text()}" if v is None else
                           f"{metric} for {attr}: {v:.4g}{ci_text} (needs {t.text()}){caveat}")
                    checks.append(Check.judged(metric, v, t, subject=attr, message=msg, detail=detail))
                else:
                    msg = (f"{metric} for {attr} is undefined: {why}" if v is None else
                           f"{metric} for {attr}: {v:.4g}{ci_text} "
                           f"(informational: no bound in checks.fairness){caveat}")
                    checks.append(Check.info(metric, v, subject=attr, message=msg, detail=detail))

            attributes[attr] = {
                "privileged": privileged_def,
                "metrics": values,
                "ci95": {m: intervals[m]["ci95"] for m in FAIRNESS_METRICS},
                "groups": group_stats,
                "confusion_favorable": {g: dict(zip(("tp", "fp", "fn", "tn"), (int(x) for x in counts[g]), strict=True))
                                        for g in GROUPS},
            }

        summary = {
            "rows": int(len(y)),
            "favorable_label": spec.data.favorable_label,
            "positive_label": spec.data.positive_label,
            "favorable_in_0_1_encoding": fav,
            "convention": "rates are relative to the favorable outcome (AIF360): selection rate = P(favorable "
                          "prediction); TPR = P(favorable prediction | truly favorable); FPR = P(favorable "
                          "prediction | truly unfavorable); differences and ratios are unprivileged vs privileged",
            "min_group_size": min_size,
            "attributes": attributes,
        }
        return outcome(self.name, checks, library=self.library, summary=summary)

    @staticmethod
    def _undefined_reason(metric: str, attr: str, stats: dict[str, dict[str, Any]]) -> str:
        if metric == "disparate_impact":
            return (f"the privileged group ({attr}=privileged) has no favorable predictions "
                    f"(selection rate {stats['privileged']['selection_rate']}), so the ratio is undefined")
        if metric in ("equal_opportunity_difference", "false_negative_rate_difference"):
            return "a group has no truly favorable rows, so its TPR/FNR is undefined"
        if metric == "false_positive_rate_difference":
            return "a group has no truly unfavorable rows, so its FPR is undefined"
        if metric == "average_odds_difference":
            return "a group's TPR or FPR is undefined (no truly favorable or no truly unfavorable rows)"
        return "a group has no rows"


STAGE = FairnessStage()
