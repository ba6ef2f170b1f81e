"""Online estimators. Each has ``update(...)`` and ``snapshot() -> EstimatorSnapshot``."""

from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState

__all__ = ["EstimatorSnapshot", "EstimatorState"]
