"""What the stage measured: per-attack results, noise results and the report the checks are built from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelcert.stages.robustness.space import PerturbationSpace


@dataclass
class AttackResult:
    """One attack's outcome on the sample: per eps, the adversarial rows and who stayed robust."""

    attack: str
    eps: list[float]
    correct: np.ndarray  # clean prediction == label, per sampled row
    robust: dict[float, np.ndarray]  # eps -> robust per row
    adversarial: dict[float, pd.DataFrame]  # eps -> attacked feature rows (the original row where none was found)
    runtime_s: float
    detail: dict[str, Any] = field(default_factory=dict)
    #: HopSkipJump only: L-inf distance (normalized space) to the closest adversarial example found, inf if none.
    distance: np.ndarray | None = None

    def robust_accuracy(self, eps: float) -> float:
        return float(self.robust[eps].mean()) if len(self.correct) else math.nan

    def success_rate(self, eps: float) -> float:
        n = int(self.correct.sum())
        return float((self.correct & ~self.robust[eps]).sum() / n) if n else math.nan


@dataclass
class NoiseResult:
    sigma: float
    flip_rate: float
    accuracy: float
    repeats: int


@dataclass
class RobustnessReport:
    """Everything the stage measured; also the test hook to inspect adversarial rows."""

    sample: pd.DataFrame
    labels: np.ndarray
    clean_pred: np.ndarray
    space: PerturbationSpace
    attacks: dict[str, AttackResult]
    not_applicable: dict[str, str]  # attack -> reason
    noise: list[NoiseResult]
    runtime_s: dict[str, float]
    summary: dict[str, Any]
