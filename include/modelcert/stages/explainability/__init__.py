"""The explainability stage: why the model decides (importance), whether its inputs stand in for a protected
attribute (proxies), where it is weak (slices), and whether it is no worse than the version it replaces
(champion) or a benchmark. See :mod:`modelcert.stages.explainability.stage`."""

from modelcert.stages.explainability.stage import STAGE

__all__ = ["STAGE"]
