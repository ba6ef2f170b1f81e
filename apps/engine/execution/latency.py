"""Latency models for the paper venue: how long an action takes to reach the matching engine
(entry latency) and how long a venue event takes to reach us (response latency).

A latency model is stateless; the caller owns the random generator (``np.random.Generator``), so a
venue seeded with the same seed replays the same delays. All values are integer nanoseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class LatencyModel(Protocol):
    """Anything that can draw one latency, in ns, from a caller-owned generator."""

    def sample_ns(self, rng: np.random.Generator) -> int: ...

    def validate(self) -> None: ...


@dataclass(frozen=True)
class ConstantLatency:
    """A fixed delay.

    Parameters
    ----------
    latency_ns : int
        Delay in nanoseconds, ``>= 0``.
    """

    latency_ns: int = 0

    def validate(self) -> None:
        if not isinstance(self.latency_ns, (int, np.integer)) or isinstance(self.latency_ns, bool):
            raise ValueError(f"latency_ns must be an integer number of ns, got {self.latency_ns!r}")
        if self.latency_ns < 0:
            raise ValueError(f"latency_ns must be >= 0, got {self.latency_ns!r}")

    def sample_ns(self, rng: np.random.Generator) -> int:
        return int(self.latency_ns)


@dataclass(frozen=True)
class EmpiricalLatency:
    """Delays drawn uniformly at random (with replacement) from recorded samples.

    Use it with a recorded round-trip or one-way distribution (e.g. ack minus send times from a live
    session) so the paper venue reproduces its tail, not only its mean.

    Parameters
    ----------
    samples_ns : tuple of int
        Recorded delays in ns, each finite and ``>= 0``; at least one.
    """

    samples_ns: tuple[int, ...] = field(default=(0,))

    @classmethod
    def from_array(cls, samples_ns: np.ndarray | list[int] | tuple[int, ...]) -> EmpiricalLatency:
        """Build from any 1-d array-like of ns (floats are rounded to the nearest ns)."""
        arr = np.asarray(samples_ns, dtype=float).ravel()
        if arr.size == 0:
            raise ValueError("samples_ns must hold at least one latency, got an empty array")
        if not np.all(np.isfinite(arr)):
            raise ValueError("samples_ns must be finite, got NaN or inf")
        model = cls(samples_ns=tuple(round(x) for x in arr))
        model.validate()
        return model

    def validate(self) -> None:
        if len(self.samples_ns) == 0:
            raise ValueError("samples_ns must hold at least one latency, got an empty tuple")
        bad = [x for x in self.samples_ns if not (isinstance(x, (int, np.integer)) and x >= 0)]
        if bad:
            raise ValueError(f"samples_ns must be integer ns >= 0, got {bad[0]!r}")

    def sample_ns(self, rng: np.random.Generator) -> int:
        return int(self.samples_ns[int(rng.integers(len(self.samples_ns)))])

    @property
    def mean_ns(self) -> float:
        return float(np.mean(self.samples_ns))


def as_latency_model(value: int | LatencyModel) -> LatencyModel:
    """Turn a plain ``int`` of ns into :class:`ConstantLatency`; pass a model through; validate both."""
    if isinstance(value, bool):
        raise ValueError(f"latency must be int ns or a LatencyModel, got {value!r}")
    if isinstance(value, (int, np.integer)):
        model: LatencyModel = ConstantLatency(int(value))
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"latency must be a whole number of ns, got {value!r}")
        model = ConstantLatency(int(value))
    elif isinstance(value, LatencyModel):
        model = value
    else:
        raise ValueError(f"latency must be int ns or a LatencyModel, got {value!r}")
    model.validate()
    return model
