"""The stage contract: a stage reads an :class:`EvalContext` and returns a frozen, typed outcome.

Adding a stage = one module + one test module + one entry in ``modelcert.stages.REGISTRY``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from modelcert.context import EvalContext
from modelcert.thresholds import Threshold, Verdict

StageStatus = Literal["passed", "failed", "error", "not_applicable"]


@dataclass(frozen=True)
class Check:
    """One judged (or, with ``passed=None``, informational) number, stored with the threshold that judged it."""

    name: str
    value: float | None
    threshold: dict[str, Any] | None = None
    passed: bool | None = None
    #: What the number is about: "" for the whole stage, or e.g. "sex", "sex=unprivileged", "eps=0.05".
    subject: str = ""
    required: bool = True
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    #: pass / fail / inconclusive for a judged check, None for an informational one. ``passed`` mirrors it
    #: (True / False / None): an inconclusive required check has ``passed`` None and ``verdict`` "inconclusive".
    verdict: Verdict | None = None

    def __post_init__(self) -> None:
        if self.verdict is None and self.passed is not None:
            object.__setattr__(self, "verdict", "pass" if self.passed else "fail")
        expected = {None: None, "pass": True, "fail": False, "inconclusive": None}[self.verdict]
        if self.passed is not expected:
            raise ValueError(f"check {self.name}: passed={self.passed!r} contradicts verdict {self.verdict!r}")

    @classmethod
    def interval_judged(cls, name: str, value: float | None, ci: tuple[float, float] | list[float] | None,
                        threshold: Threshold, *, verdict: Verdict | None = None, subject: str = "",
                        message: str = "", detail: dict[str, Any] | None = None) -> Check:
        """A check judged on its 95% interval (:meth:`Threshold.interval_verdict`), or on ``verdict`` when the
        caller already adjusted it for multiple comparisons. The interval is stored in ``detail['ci95']``."""
        v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        lo, hi = (None, None) if ci is None else (float(ci[0]), float(ci[1]))
        if verdict is None:
            verdict = threshold.interval_verdict(lo, hi) if v is not None else "fail"
        passed = {"pass": True, "fail": False, "inconclusive": None}[verdict]
        return cls(name=name, value=v, threshold=threshold.describe(), passed=passed, subject=subject,
                   required=threshold.required, verdict=verdict,
                   message=message or f"{name} {_fmt(v)} (needs {threshold.text()}; {verdict})",
                   detail={**(detail or {}), "ci95": None if ci is None else [lo, hi]})

    @property
    def inconclusive(self) -> bool:
        return self.verdict == "inconclusive"

    @classmethod
    def judged(cls, name: str, value: float | None, threshold: Threshold, *, subject: str = "", message: str = "",
               detail: dict[str, Any] | None = None) -> Check:
        v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        return cls(name=name, value=v, threshold=threshold.describe(), passed=threshold.check(v), subject=subject,
                   required=threshold.required, message=message or f"{name} {_fmt(v)} (needs {threshold.text()})",
                   detail=detail or {})

    @classmethod
    def info(cls, name: str, value: float | None, *, subject: str = "", message: str = "",
             detail: dict[str, Any] | None = None) -> Check:
        v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        return cls(name=name, value=v, passed=None, subject=subject, required=False, message=message,
                   detail=detail or {})

    @property
    def failed_required(self) -> bool:
        return self.required and self.passed is False


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


@dataclass(frozen=True)
class RequiredCheck:
    """A check the stage must have judged against its threshold before it may pass.

    Why: a stage whose required measurement could not be made (e.g. no attack ran on the model) has no
    failing check, so without this it would pass with the bound never tested."""

    #: The :attr:`Check.name` that must occur with a verdict (any subject counts).
    name: str
    #: The spec path of the threshold, named in the error (e.g. ``checks.robustness.min_robust_accuracy``).
    field: str
    #: What the stage knows about why it could not be evaluated (empty when it was, or when it does not know).
    why_missing: str = ""


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    status: StageStatus
    checks: tuple[Check, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    #: Why the stage errored or does not apply.
    reason: str | None = None
    library: str = ""
    library_version: str = ""
    #: The checks this stage had to evaluate to pass (see :func:`enforce_evaluated`).
    requires: tuple[RequiredCheck, ...] = ()

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed_required]

    @property
    def unevaluated(self) -> list[RequiredCheck]:
        """Required checks without any judged :class:`Check` of that name."""
        judged = {c.name for c in self.checks if c.verdict is not None}
        return [r for r in self.requires if r.name not in judged]


class Stage(Protocol):
    name: str
    library: str

    def run(self, ctx: EvalContext) -> StageOutcome: ...


def outcome(stage: str, checks: list[Check], *, library: str, summary: dict[str, Any] | None = None,
            requires: Iterable[RequiredCheck] = ()) -> StageOutcome:
    """Status from checks: failed when any required check failed, else passed — unless a check in
    ``requires`` was never judged, which makes it ``error`` (:func:`enforce_evaluated`)."""
    status: StageStatus = "failed" if any(c.failed_required for c in checks) else "passed"
    return enforce_evaluated(StageOutcome(stage=stage, status=status, checks=tuple(checks), summary=summary or {},
                                          library=library, library_version=library_version(library),
                                          requires=tuple(requires)))


def enforce_evaluated(result: StageOutcome) -> StageOutcome:
    """The general rule: an outcome that would be ``passed`` without having judged every check it requires is
    ``error``, with the reason (what could not run, and which thresholds were not evaluated). The checks that
    were measured stay as evidence. A ``failed`` outcome stays failed: it is already not passed.

    Applied by :func:`outcome` and again by ``pipeline.guarded``, through which every stored outcome passes."""
    if result.status != "passed":
        return result
    missing = result.unevaluated
    if not missing:
        return result
    fields = [r.field for r in missing]
    causes = list(dict.fromkeys(r.why_missing for r in missing if r.why_missing))
    verb = "was" if len(fields) == 1 else "were"
    reason = "; ".join([*causes, f"{', '.join(fields)} {verb} not evaluated"])
    return dataclasses.replace(result, status="error", reason=reason,
                               summary={**result.summary, "not_evaluated": fields})


def threshold_requirements(section: str, thresholds: Mapping[str, Any],
                           check_names: Mapping[str, str] | None = None) -> tuple[RequiredCheck, ...]:
    """The standard declaration: every *required* threshold of a spec section (``section`` is its path, e.g.
    ``checks.performance``) must be judged. The check name is the threshold's key unless ``check_names``
    renames it; entries that are not thresholds (or are ``None``: removed for recertification) are skipped."""
    from modelcert.thresholds import Threshold

    names = check_names or {}
    return tuple(RequiredCheck(name=names.get(key, key), field=f"{section}.{key}")
                 for key, t in thresholds.items() if isinstance(t, Threshold) and t.required)


def not_applicable(stage: str, reason: str, *, library: str) -> StageOutcome:
    return StageOutcome(stage=stage, status="not_applicable", reason=reason, library=library,
                        library_version=library_version(library))


def library_version(dist: str) -> str:
    if not dist:
        return ""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""
