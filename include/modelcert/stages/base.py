"""The stage contract: a stage reads an :class:`EvalContext` and returns a frozen, typed outcome.

Adding a stage = one module + one test module + one entry in ``modelcert.stages.REGISTRY``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from modelcert.context import EvalContext
from modelcert.thresholds import Threshold

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

    @classmethod
    def judged(cls, name: str, value: float | None, threshold: Threshold, *, subject: str = "", message: str = "",
               detail: dict[str, Any] | None = None) -> "Check":
        v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        return cls(name=name, value=v, threshold=threshold.describe(), passed=threshold.check(v), subject=subject,
                   required=threshold.required, message=message or f"{name} {_fmt(v)} (needs {threshold.text()})",
                   detail=detail or {})

    @classmethod
    def info(cls, name: str, value: float | None, *, subject: str = "", message: str = "",
             detail: dict[str, Any] | None = None) -> "Check":
        v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        return cls(name=name, value=v, passed=None, subject=subject, required=False, message=message, detail=detail or {})

    @property
    def failed_required(self) -> bool:
        return self.required and self.passed is False


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


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

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed_required]


class Stage(Protocol):
    name: str
    library: str

    def run(self, ctx: EvalContext) -> StageOutcome: ...


def outcome(stage: str, checks: list[Check], *, library: str, summary: dict[str, Any] | None = None) -> StageOutcome:
    """Status from checks: failed when any required check failed, else passed."""
    status: StageStatus = "failed" if any(c.failed_required for c in checks) else "passed"
    return StageOutcome(stage=stage, status=status, checks=tuple(checks), summary=summary or {},
                        library=library, library_version=library_version(library))


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
