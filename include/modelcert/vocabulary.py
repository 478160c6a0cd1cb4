"""The words a spec and the risk policy share: risk tiers, metric and check names, durations, the tier refusal.

A leaf module: :mod:`modelcert.spec`, :mod:`modelcert.policy` and :mod:`modelcert.policy_rules` all use these,
and import them from here rather than from one another (each re-exports what it always offered).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from modelcert.safe_yaml import short

if TYPE_CHECKING:
    from modelcert.policy import Policy

#: Tiers every risk policy defines; a policy may add more (``modelcert.policy``), and a submitted spec may name
#: any tier of the policy in force. The sign-off quorum per tier is the policy's (``signoff`` of the tier).
RISK_TIERS = ("low", "medium", "high")

PERFORMANCE_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "brier_score",
    "expected_calibration_error",
    "latency_p50_ms",
    "latency_p95_ms",
    "model_size_mb",
)
FAIRNESS_METRICS = (
    "disparate_impact",
    "statistical_parity_difference",
    "equal_opportunity_difference",
    "average_odds_difference",
    "false_positive_rate_difference",
    "false_negative_rate_difference",
    "base_rate_difference",
)

#: The checks a policy can name, as ``<stage>.<check>`` (the spec's ``checks.<stage>.<check>``).
CHECKS: dict[str, tuple[str, ...]] = {
    "data_quality": ("null_fraction", "duplicate_fraction", "leakage_fraction"),
    "performance": PERFORMANCE_METRICS,
    "robustness": ("min_robust_accuracy", "max_flip_rate"),
    "fairness": FAIRNESS_METRICS,
    "drift": ("max_drifted_share",),
    "explainability": ("max_proxy_auc", "max_weak_slices", "roc_auc_max_drop", "accuracy_max_drop",
                       "impact_ratio_max_drop"),
}
KNOWN_CHECKS = frozenset(f"{stage}.{name}" for stage, names in CHECKS.items() for name in names)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: No duration in a spec (sign-off timeout, certificate validity) may exceed ten years; none may be <= 0.
MAX_DURATION = timedelta(days=3650)
_DURATION_HELP = "use a positive number with a unit s, m, h, d or w, e.g. '7d' or '12h', at most 3650d"


def _bounded(td: timedelta, value: Any) -> timedelta:
    if td <= timedelta(0):
        raise ValueError(f"{short(value)} is not a positive duration; {_DURATION_HELP}")
    if td > MAX_DURATION:
        raise ValueError(f"{short(value)} is longer than 3650 days; {_DURATION_HELP}")
    return td


def parse_duration(value: Any) -> timedelta:
    """'90d', '12h', '30m', '45s', '2w' or a number of seconds; positive and at most ten years, so that a
    negative validity or a 99999999999999-day timeout is refused here instead of breaking a later task."""
    if isinstance(value, timedelta):
        return _bounded(value, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > MAX_DURATION.total_seconds():
            raise ValueError(f"{short(value)} seconds is out of range; {_DURATION_HELP}")
        return _bounded(timedelta(seconds=float(value)), value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            if len(m.group(1)) > 9:
                raise ValueError(f"{short(value)} is longer than 3650 days; {_DURATION_HELP}")
            amount = int(m.group(1))
            seconds = amount * timedelta(**{_UNITS[m.group(2)]: 1}).total_seconds()
            if seconds > MAX_DURATION.total_seconds():
                raise ValueError(f"{short(value)} is longer than 3650 days; {_DURATION_HELP}")
            return _bounded(timedelta(**{_UNITS[m.group(2)]: amount}), value)
        if value.startswith("P") and len(value) <= 64:  # ISO 8601, as stored in the run's spec JSON
            from pydantic import TypeAdapter

            try:
                td = TypeAdapter(timedelta).validate_python(value)
            except (ValidationError, OverflowError):
                pass
            else:
                return _bounded(td, value)
    raise ValueError(f"{short(value)} is not a duration; {_DURATION_HELP}")


def format_duration(td: timedelta) -> str:
    """A duration as a policy or spec writes it (``180d``, ``12h``), for messages."""
    seconds = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def tier_message(name: object, policy: Policy) -> str:
    """The one line refusing a risk tier the policy does not define."""
    return (f"use_case.risk_tier: {short(name)} is not allowed; the risk tiers of {policy.label} are "
            f"{', '.join(sorted(policy.tiers))}")


#: Fields of the spec's ``documentation:`` section (the model card and the regulation dossiers are filled from
#: them). Each is also a declaration the policy may require (``required_declarations``) and the compliance stage
#: then finds present: optional for a low tier, required for the high tier by the shipped policy.
DOCUMENTATION_FIELDS = ("model_description", "algorithm_rationale", "assumptions", "limitations",
                        "ethical_considerations", "training_data_description", "evaluation_data_description",
                        "data_collection_period", "human_oversight", "monitoring_plan", "cybersecurity",
                        "provider", "foreseeable_misuse", "benchmarking", "transparency")
Declaration = Literal["intended_use", "owner", "risk_tier", "data_retention_days", "consent_basis",
                      "model_description", "algorithm_rationale", "assumptions", "limitations",
                      "ethical_considerations", "training_data_description", "evaluation_data_description",
                      "data_collection_period", "human_oversight", "monitoring_plan", "cybersecurity",
                      "provider", "foreseeable_misuse", "benchmarking", "transparency"]
