"""Stage registry. Each stage is one module exposing a ``STAGE`` object that satisfies :class:`Stage`.

Modules are imported lazily: a DAG file or CLI listing stages must not pay for GX, ART or Evidently.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the contract lives in modelcert.stages.base; importing it pulls pandas
    from modelcert.stages.base import Stage

#: stage name -> module. Order is the order of display; dependencies between stages: none.
REGISTRY: dict[str, str] = {
    "data_quality": "modelcert.stages.data_quality",
    "performance": "modelcert.stages.performance",
    "robustness": "modelcert.stages.robustness",
    "fairness": "modelcert.stages.fairness",
    "drift": "modelcert.stages.drift",
    "compliance": "modelcert.stages.compliance",
    "explainability": "modelcert.stages.explainability",
}
STAGE_NAMES: tuple[str, ...] = tuple(REGISTRY)


def get_stage(name: str) -> Stage:
    if name not in REGISTRY:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).STAGE


__all__ = ["REGISTRY", "STAGE_NAMES", "get_stage"]
