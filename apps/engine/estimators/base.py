"""The common face of every estimator: a value, its uncertainty, a state and the time of its last input.

Principle 3 of the architecture: estimators know what they don't know. Quoting reads ``state`` and reacts;
nothing falls back to a constant silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class EstimatorState(StrEnum):
    WARMING = "warming"  # not enough data yet for a usable value
    OK = "ok"
    STALE = "stale"  # no input for longer than the estimator's staleness bound
    FAILED = "failed"  # the value is implausible or the model check failed; never clamped


@dataclass(frozen=True, slots=True)
class EstimatorSnapshot:
    """A read-only view of an estimator.

    ``value`` is in the estimator's documented unit; ``std`` is its standard error (or posterior sd);
    ``ci_low``/``ci_high`` a credible/confidence interval when the estimator has one (else NaN);
    ``last_input_ns`` the local timestamp of the last update (0 = never); ``detail`` extra named numbers
    (goodness-of-fit statistics, counts, alternative fits) for the dashboard and the decision record;
    ``message`` says why the state is what it is when it is not OK.
    """

    name: str
    value: float
    std: float
    state: EstimatorState
    last_input_ns: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    detail: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def usable(self) -> bool:
        return self.state is EstimatorState.OK
