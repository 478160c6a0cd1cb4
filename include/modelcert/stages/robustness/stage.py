"""The robustness stage: the checks built from the report, what it must have judged to pass, and ``STAGE``."""

from __future__ import annotations

from typing import Any

from modelcert.context import EvalContext
from modelcert.stages.base import Check, RequiredCheck, StageOutcome, not_applicable, outcome
from modelcert.stages.robustness.evaluate import evaluate
from modelcert.stages.robustness.results import RobustnessReport
from modelcert.stages.robustness.space import NotApplicable

NAME = "robustness"
LIBRARY = "adversarial-robustness-toolbox"


def _required_checks(rc: Any, report: RobustnessReport) -> list[RequiredCheck]:
    """What the stage must have judged to pass (item 6): a robust accuracy from at least one attack that ran on
    the model, and a noise flip rate; with the reason when it could not (e.g. pgd on a random forest)."""
    required: list[RequiredCheck] = []
    if rc.min_robust_accuracy.required:
        if report.attacks:
            why = ""
        elif report.not_applicable:
            why = "no requested attack could run on the model (" + "; ".join(
                f"{a}: {r}" for a, r in report.not_applicable.items()) + ")"
        else:
            why = "no attack was requested (checks.robustness.attacks is empty)"
        required.append(RequiredCheck("robust_accuracy", "checks.robustness.min_robust_accuracy", why))
    if rc.max_flip_rate.required:
        required.append(RequiredCheck("noise_flip_rate", "checks.robustness.max_flip_rate",
                                      "" if report.noise else "no noise level was requested "
                                      "(checks.robustness.noise_sigma is empty)"))
    return required


class RobustnessStage:
    name = NAME
    library = LIBRARY

    def run(self, ctx: EvalContext) -> StageOutcome:
        if ctx.spec.is_audit:
            return not_applicable(NAME, "no model artifact: attacks need the model itself (predictions-only audit)",
                                  library=LIBRARY)
        try:
            report = evaluate(ctx)
        except NotApplicable as exc:
            return not_applicable(NAME, str(exc), library=LIBRARY)
        rc = ctx.spec.checks.robustness
        checks: list[Check] = []
        clean_acc = float((report.clean_pred == report.labels).mean())
        checks.append(Check.info("clean_accuracy", clean_acc, message=f"accuracy on the {len(report.labels)} sampled "
                                 f"test rows without perturbation: {clean_acc:.4g}"))
        for name, res in report.attacks.items():
            for eps in res.eps:
                subject = f"{name} eps={eps:g}"
                n_correct = int(res.correct.sum())
                detail = {"eps": eps, "sample_size": len(res.correct), "correct": n_correct,
                          "robust": int(res.robust[eps].sum()), "clean_accuracy": clean_acc, **res.detail}
                checks.append(Check.judged("robust_accuracy", res.robust_accuracy(eps), rc.min_robust_accuracy,
                                           subject=subject, detail=detail))
                sr = res.success_rate(eps)
                checks.append(Check.info(
                    "attack_success_rate", sr, subject=subject,
                    message=(f"{name} changed the prediction of {int((res.correct & ~res.robust[eps]).sum())} of "
                             f"{n_correct} correctly classified rows within eps={eps:g}") if n_correct else
                    "no correctly classified row to attack"))
        for attack, reason in report.not_applicable.items():
            checks.append(Check.info("attack_not_applicable", None, subject=attack,
                                     message=f"{attack} not applicable: {reason}", detail={"reason": reason}))
        for nr in report.noise:
            subject = f"sigma={nr.sigma:g}"
            detail = {"sigma": nr.sigma, "repeats": nr.repeats, "sample_size": len(report.labels)}
            checks.append(Check.judged("noise_flip_rate", nr.flip_rate, rc.max_flip_rate, subject=subject,
                                       detail=detail))
            checks.append(Check.info(
                "noise_accuracy", nr.accuracy, subject=subject, detail=detail,
                message=f"accuracy under Gaussian noise sigma={nr.sigma:g} x std: {nr.accuracy:.4g}"))
        return outcome(NAME, checks, library=LIBRARY, summary=report.summary, requires=_required_checks(rc, report))


STAGE = RobustnessStage()
