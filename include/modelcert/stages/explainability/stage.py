"""The explainability stage: importance, proxies, weak slices and the comparison with the champion / benchmark.

What each part needs, and what it says when it cannot run:

* importance needs the model (a predictions-only audit has none: recorded as not applicable, with why);
* proxies need only the data (the model's features, or in an audit the data's columns) and the groups;
* weak slices need true labels and predictions (recertification on unlabelled production data: not applicable);
* the comparison runs when the run's evidence names a champion (a valid certificate of the same model name,
  fixed at registration) or the spec names a ``benchmark``; a required change bound that could not be judged
  makes the stage ``error`` with the reason (``RequiredCheck``), never a silent pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelcert.context import EvalContext, load_model_file
from modelcert.errors import ArtifactError, ModelcertError
from modelcert.stages.base import Check, RequiredCheck, StageOutcome, outcome
from modelcert.stages.explainability.columns import candidate_features, code_column, seeded_rows
from modelcert.stages.explainability.compare import Metric, paired_bootstrap, verdicts
from modelcert.stages.explainability.importance import Importance, explain
from modelcert.stages.explainability.proxies import probe
from modelcert.stages.explainability.slices import find_weak_slices

NAME = "explainability"
LIBRARY = "shap"
AUDIT_IMPORTANCE = ("not applicable: a predictions-only audit has no model to explain (importance needs to query "
                    "the model); proxies and weak slices are computed from the data and the given predictions")
#: Change bound per compared metric.
BOUNDS = {"roc_auc": "roc_auc_max_drop", "accuracy": "accuracy_max_drop", "impact_ratio": "impact_ratio_max_drop"}


def statistics(ctx: EvalContext) -> tuple[float, str, int, int]:
    """alpha, multiple-testing method, bootstrap resamples and seed: the run's (effective) spec ``statistics``,
    the same settings the fairness stage uses (``modelcert.stats.settings``)."""
    from modelcert import stats

    st = stats.settings(ctx.spec)
    return st["alpha"], st["multiple_testing"], st["resamples"], st["seed"]


def _positive_column(model: Any, positive_label: Any) -> int:
    classes = list(getattr(model, "classes_", [0, 1]))
    for i, c in enumerate(classes):
        if c == positive_label or str(c) == str(positive_label):
            return i
    if classes == [0, 1]:
        return 1
    raise ArtifactError(f"data.positive_label: {positive_label!r} is not among the model's classes {classes}")


class ExplainabilityStage:
    name = NAME
    library = LIBRARY

    def run(self, ctx: EvalContext) -> StageOutcome:
        ec = ctx.spec.checks.explainability
        checks: list[Check] = []
        requires: list[RequiredCheck] = []
        summary: dict[str, Any] = {}
        test = ctx.frame("test")
        has_labels = ctx.spec.data.label in test.columns
        features, source = candidate_features(ctx)
        rows = seeded_rows(len(test), ec.sample_size, ec.seed)
        # importance on the first rows of the seeded sample: a random subset of it (the order is random)
        rows = rows[np.random.default_rng(ec.seed).permutation(len(rows))]
        summary["sample"] = {"rows": len(rows), "of": len(test), "seed": ec.seed, "features_from": source}
        groups = {attr: ctx.privileged_mask(attr, "test") for attr in ctx.spec.data.protected_attributes}

        from threadpoolctl import threadpool_limits

        # One native thread (OpenMP/BLAS): the stages of a run execute in parallel on a few cores, and on a busy
        # host OpenMP's and OpenBLAS's spinning thread teams made model predictions and the bootstrap's
        # matrix-vector products 3-10x slower than one thread (bench/bench_explain.py).
        with threadpool_limits(limits=1):
            # The run's one prediction of the test data (the evaluation cache, else the model scores it once);
            # slices and the comparison share it.
            score = None if ctx.spec.is_audit else ctx.predictions("test")[1]
            self._proxies(ctx, test, features, rows, groups, checks, requires, summary)
            self._importance(ctx, rows[:ec.importance_sample_size], groups, has_labels, checks, summary)
            self._slices(ctx, test, features, has_labels, score, checks, requires, summary)
            self._compare(ctx, groups, has_labels, score, checks, requires, summary)
        return outcome(NAME, checks, library=LIBRARY, summary=summary, requires=requires)

    # ------------------------------------------------------------------------------------------- proxies
    @staticmethod
    def _proxies(ctx: EvalContext, test: pd.DataFrame, features: list[str], rows: np.ndarray,
                 groups: dict[str, np.ndarray], checks: list[Check], requires: list[RequiredCheck],
                 summary: dict[str, Any]) -> None:
        ec = ctx.spec.checks.explainability
        frame = test if ctx.spec.is_audit else ctx.feature_frame("test")
        out: dict[str, Any] = {}
        notes = []
        for attr, mask in groups.items():
            feats = [f for f in features if f != attr]
            res = probe(attr, frame[feats].iloc[rows].reset_index(drop=True), mask[rows], seed=ec.seed,
                        bins=ec.numeric_bins)
            out[attr] = res.as_dict()
            top = ", ".join(f"{a['feature']} (V={a['cramers_v']:.2f})" for a in res.associations[:3]) or "none"
            if res.auc is None:
                notes.append(f"{attr}: {res.note}")
                checks.append(Check.info("proxy_auc", None, subject=attr, message=f"proxy probe for {attr} not run: "
                                         f"{res.note}", detail=res.as_dict()))
                continue
            assert res.ci is not None
            checks.append(Check.interval_judged(
                "max_proxy_auc", res.auc, res.ci, ec.max_proxy_auc, subject=attr, detail=res.as_dict(),
                message=(f"the {len(feats)} features predict {attr}'s privileged group with ROC AUC {res.auc:.3f} "
                         f"(95% CI {res.ci[0]:.3f}-{res.ci[1]:.3f}; 0.5 = no information; needs "
                         f"{ec.max_proxy_auc.text()}); strongest proxies: {top}")))
        summary["proxies"] = out
        if ec.max_proxy_auc.required:
            requires.append(RequiredCheck("max_proxy_auc", "checks.explainability.max_proxy_auc", "; ".join(notes)))

    # ------------------------------------------------------------------------------------------- importance
    @staticmethod
    def _importance(ctx: EvalContext, rows: np.ndarray, groups: dict[str, np.ndarray], has_labels: bool,
                    checks: list[Check], summary: dict[str, Any]) -> None:
        ec = ctx.spec.checks.explainability
        if ctx.spec.is_audit:
            summary["importance"] = {"not_applicable": AUDIT_IMPORTANCE}
            checks.append(Check.info("feature_importance", None, message=f"feature importance {AUDIT_IMPORTANCE}"))
            return
        X = ctx.feature_frame("test").iloc[rows].reset_index(drop=True)
        y = ctx.labels("test")[rows] if has_labels else None
        result = explain(model=ctx.model, score=ctx.score_features, isolated=ctx.model_isolated,
                         positive_index=ctx.positive_index(), X=X, y=y,
                         groups={a: m[rows] for a, m in groups.items()}, seed=ec.seed, repeats=ec.permutation_repeats)
        if not isinstance(result, Importance):
            summary["importance"] = {"not_applicable": result}
            checks.append(Check.info("feature_importance", None,
                                     message=f"feature importance not applicable: {result}"))
            return
        summary["importance"] = result.as_dict()
        for r in result.ranked():
            checks.append(Check.info("feature_importance", r["importance"], subject=r["feature"],
                                     message=f"{r['feature']}: {result.unit} {r['importance']:.4g} "
                                             f"({r['share']:.0%} of the total; {result.method} on {result.rows} rows)",
                                     detail={"method": result.method, "sample_rows": result.rows, "seed": result.seed,
                                             "share": r["share"]}))
        for attr, cmp in result.by_group.items():
            top = cmp["largest_differences"][0] if cmp["largest_differences"] else None
            value = abs(top["difference"]) if top else None
            msg = (f"{attr}: top features privileged {', '.join(cmp['privileged_top'][:3])}; unprivileged "
                   f"{', '.join(cmp['unprivileged_top'][:3])}")
            if top:
                msg += (f"; largest difference {top['feature']} ({top['privileged_share']:.0%} vs "
                        f"{top['unprivileged_share']:.0%} of the importance)")
            checks.append(Check.info("importance_group_difference", value, subject=attr, message=msg,
                                     detail={"method": result.method, **cmp}))

    # ------------------------------------------------------------------------------------------- slices
    @staticmethod
    def _slices(ctx: EvalContext, test: pd.DataFrame, features: list[str], has_labels: bool,
                score: np.ndarray | None, checks: list[Check], requires: list[RequiredCheck],
                summary: dict[str, Any]) -> None:
        ec = ctx.spec.checks.explainability
        if not has_labels:
            why = f"no labels ({ctx.spec.data.label!r}) in the test data: errors cannot be counted"
            summary["slices"] = {"not_applicable": why}
            if ec.max_weak_slices.required:
                requires.append(RequiredCheck("max_weak_slices", "checks.explainability.max_weak_slices", why))
            return
        alpha = statistics(ctx)[0]
        y = ctx.labels("test")
        y_pred = ctx.predictions("test")[0] if score is None else (score >= 0.5).astype(np.int64)
        names = list(dict.fromkeys([*features, *ctx.spec.data.protected_attributes]))
        coded = [c for c in (code_column(test[n], bins=ec.numeric_bins) for n in names) if c is not None]
        search = find_weak_slices(coded, y_pred != y, min_size=ec.min_slice_size,
                                  min_difference=ec.slice_min_difference, alpha=alpha, top=ec.top_slices)
        detail = {**search.as_dict(), "min_slice_size": ec.min_slice_size,
                  "min_difference": ec.slice_min_difference, "features": [c.name for c in coded]}
        summary["slices"] = detail
        weak = search.weak[0] if search.weak else None
        msg = (f"{search.weak_count} of {search.tried} slices have an error rate significantly above the rest "
               f"(BH FDR {alpha:g}) by at least {ec.slice_min_difference:g}; overall error rate "
               f"{search.overall_error:.3f}")
        if weak:
            msg += (f"; weakest: {weak['slice']} ({weak['size']} rows, error rate {weak['error_rate']:.3f}, "
                    f"95% CI {weak['ci95'][0]:.3f}-{weak['ci95'][1]:.3f})")
        checks.append(Check.judged("max_weak_slices", float(search.weak_count), ec.max_weak_slices,
                                   message=msg + f" (needs {ec.max_weak_slices.text()})", detail=detail))
        if ec.max_weak_slices.required:
            requires.append(RequiredCheck("max_weak_slices", "checks.explainability.max_weak_slices"))

    # ------------------------------------------------------------------------------------------- comparison
    def _compare(self, ctx: EvalContext, groups: dict[str, np.ndarray], has_labels: bool,
                 score: np.ndarray | None, checks: list[Check], requires: list[RequiredCheck],
                 summary: dict[str, Any]) -> None:
        ec = ctx.spec.checks.explainability
        champion = dict(ctx.evidence.champion) if ctx.evidence is not None else {}
        references: list[tuple[str, dict[str, Any]]] = []
        if champion:
            references.append((f"champion {champion.get('version')}", champion))
        if ctx.spec.benchmark is not None:
            b = ctx.spec.benchmark
            files = ctx.evidence.files if ctx.evidence is not None else {}
            from modelcert.spec import resolve_path

            path = files.get("benchmark", {}).get("path") or str(resolve_path(b.artifact, ctx.base_dir,
                                                                              field="benchmark.artifact"))
            references.append(("benchmark", {"artifact": path, "sha256": b.sha256, "format": b.format,
                                              "features": b.features or ctx.features,
                                              "trusted_types": b.trusted_types}))
        if not references:
            summary["comparison"] = {"not_applicable": "no certified champion of this model name and no benchmark "
                                                       "in the spec: nothing to compare with"}
            return
        if score is None or not has_labels:
            why = ("a predictions-only audit has no model to compare" if ctx.spec.is_audit
                   else "no labels in the test data")
            summary["comparison"] = {"not_applicable": why}
            return
        alpha, method, resamples, seed = statistics(ctx)
        y = ctx.labels("test")
        challenger = score
        judged: list[tuple[Metric, Any]] = []
        problems: list[str] = []
        refs_out: list[dict[str, Any]] = []
        for label, ref in references:
            try:
                scores = self._reference_scores(ctx, label, ref)
            except ModelcertError as exc:
                problems.append(f"{label}: {exc}")
                continue
            metrics = paired_bootstrap(y=y, reference=scores, challenger=challenger,
                                               favorable_positive=ctx.favorable_is_positive, groups=groups,
                                               resamples=resamples, seed=seed, label=label)
            judged += [(m, getattr(ec, BOUNDS[m.name])) for m in metrics]
            refs_out.append({k: ref.get(k) for k in ("version", "run_id", "certificate_id", "sha256", "artifact",
                                                     "evidence_digest") if ref.get(k) is not None} | {"label": label})
        results = verdicts(judged, alpha=alpha, method=method)
        table = []
        for (m, t), v in zip(judged, results, strict=True):
            ci = m.ci(alpha)
            detail = {"reference": m.reference, "challenger": m.challenger, "change": m.change,
                      "change_is": "reference minus challenger (positive = the challenger is worse)",
                      "bootstrap": "paired (the same resampled rows for both models)", "resamples": resamples,
                      "seed": seed, **v}
            checks.append(Check.interval_judged(
                BOUNDS[m.name], m.change, ci, t, verdict=v["verdict"], subject=m.subject, detail=detail,
                message=(f"{m.name} {m.subject}: {m.reference:.4f} -> {m.challenger:.4f} (drop {m.change:+.4f}, "
                         f"paired 95% CI {ci[0]:+.4f}..{ci[1]:+.4f}; needs {t.text()}; {v['verdict']})")))
            table.append({"metric": m.name, "subject": m.subject, "reference": m.reference,
                          "challenger": m.challenger, "drop": m.change, "ci95": list(ci), "bound": t.describe(),
                          "verdict": v["verdict"]})
        summary["comparison"] = {"references": refs_out, "table": table, "problems": problems,
                                 "alpha": alpha, "multiple_testing": method, "resamples": resamples, "seed": seed}
        why = "; ".join(problems)
        for name in dict.fromkeys(BOUNDS.values()):
            if getattr(ec, name).required:
                requires.append(RequiredCheck(name, f"checks.explainability.{name}", why))
        for (label, _), problem in ((r, p) for r in references for p in problems if p.startswith(r[0] + ":")):
            # A reference that could not be compared is a missing judgement even when another one ran.
            checks.append(Check.info("comparison_not_possible", None, subject=label, message=problem))
            requires.append(RequiredCheck(f"comparison[{label}]", f"the comparison with the {label}", problem))

    @staticmethod
    def _reference_scores(ctx: EvalContext, label: str, ref: dict[str, Any]) -> np.ndarray:
        """Positive-class probabilities of the champion or benchmark on the test data, after its bytes hashed to
        the recorded sha256 (and under the policy's formats and reviewed skops types for this tier)."""
        from modelcert.policy import load_policy

        if ref.get("unavailable"):
            raise ArtifactError(str(ref["unavailable"]))
        if not ref.get("artifact") or not ref.get("sha256"):
            raise ArtifactError("no artifact and sha256 recorded")
        policy = load_policy()
        tier = ctx.spec.use_case.risk_tier
        fmt = str(ref.get("format") or "skops")
        allowed = policy.tier(tier).allowed_artifact_formats
        refusals = [] if fmt in allowed else [f"format {fmt} is not allowed for risk tier {tier} by {policy.label}"]
        reviewed = policy.trusted_types(tier)
        try:
            model = load_model_file(Path(str(ref["artifact"])), fmt=fmt, expected_sha256=str(ref["sha256"]),
                                    trusted_types=[t for t in ref.get("trusted_types") or [] if t in reviewed],
                                    refusals=refusals)
        except ArtifactError as exc:
            raise ArtifactError(f"{label} cannot be loaded: {exc}") from None
        try:
            feats = list(ref.get("features") or ctx.features)
            test = ctx.frame("test")
            missing = [f for f in feats if f not in test.columns]
            if missing:
                raise ArtifactError(f"its feature(s) {missing[:5]} are not in data.test; list them under "
                                    "data.extra_columns of a test file that has them to compare")
            proba = np.asarray(model.predict_proba(test[feats]))
            return proba[:, _positive_column(model, ctx.spec.data.positive_label)].astype(float)
        finally:
            if getattr(model, "isolated", False):
                model.close()


STAGE = ExplainabilityStage()
