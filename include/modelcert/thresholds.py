"""Thresholds are data: a small vocabulary (min, max, abs_max, between) in the spirit of Evidently's test
aliases. The threshold that judged a value is stored next to it, so a result explains itself years later."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

#: A judged check's verdict. ``inconclusive``: the value's 95% interval straddles the bound, so the data cannot
#: tell whether the model meets it (README "Confidence-aware verdicts"); what it does is the risk policy's call.
Verdict = Literal["pass", "fail", "inconclusive"]


class Threshold(BaseModel):
    """A bound on one metric. At least one of ``min``, ``max``, ``abs_max``, ``between`` is set."""

    #: A NaN or infinite bound judges nothing (NaN never compares) and cannot be stored as JSONB: refused.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min: float | None = None
    max: float | None = None
    abs_max: float | None = None
    between: tuple[float, float] | None = None
    #: A failed non-required check is reported as a warning and does not reject the run.
    required: bool = True

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.min is None and self.max is None and self.abs_max is None and self.between is None:
            raise ValueError("a threshold needs at least one of min, max, abs_max, between")
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError(f"between {list(self.between)}: the lower bound is above the upper bound")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.abs_max is not None and self.abs_max < 0:
            raise ValueError(f"abs_max {self.abs_max} is negative; it bounds |value|")
        return self

    def check(self, value: float | None) -> bool:
        """True when ``value`` satisfies every bound. A missing or NaN value never passes."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.min is not None and value < self.min:
            return False
        if self.max is not None and value > self.max:
            return False
        if self.abs_max is not None and abs(value) > self.abs_max:
            return False
        return self.between is None or bool(self.between[0] <= value <= self.between[1])

    def allowed(self) -> tuple[float, float]:
        """The values this threshold accepts, as one interval [lo, hi] (every bound intersected)."""
        lo, hi = -math.inf, math.inf
        if self.min is not None:
            lo = max(lo, self.min)
        if self.max is not None:
            hi = min(hi, self.max)
        if self.abs_max is not None:
            lo, hi = max(lo, -self.abs_max), min(hi, self.abs_max)
        if self.between is not None:
            lo, hi = max(lo, self.between[0]), min(hi, self.between[1])
        return lo, hi

    def interval_verdict(self, lo: float | None, hi: float | None) -> Verdict:
        """Three-way verdict of a 95% interval [lo, hi] against this bound: ``pass`` when every value of the
        interval satisfies it, ``fail`` when none does, ``inconclusive`` when it straddles it. A missing
        interval (undefined metric) fails, as a missing value does in :meth:`check`."""
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            return "fail"
        lo, hi = min(lo, hi), max(lo, hi)
        allowed_lo, allowed_hi = self.allowed()
        if allowed_lo <= lo and hi <= allowed_hi:
            return "pass"
        if hi < allowed_lo or lo > allowed_hi:
            return "fail"
        return "inconclusive"

    def describe(self) -> dict[str, Any]:
        """The bound as stored beside the value it judged."""
        out: dict[str, Any] = {k: v for k, v in (("min", self.min), ("max", self.max), ("abs_max", self.abs_max))
                               if v is not None}
        if self.between is not None:
            out["between"] = list(self.between)
        out["required"] = self.required
        return out

    def text(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.abs_max is not None:
            parts.append(f"|x| <= {self.abs_max:g}")
        if self.between is not None:
            parts.append(f"in [{self.between[0]:g}, {self.between[1]:g}]")
        return " and ".join(parts)
