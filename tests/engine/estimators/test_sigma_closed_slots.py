"""σ's closed-bucket statistics built by their slots (docs/compiled-core.md, twenty-second stop).

The compiled ``SigmaEstimator._compute_closed`` (``_estimators._closed_sums``) builds ``sigma._Closed`` as its
generated ``__init__`` does, one slot per field, without the Python-level call, while ``sigma._Closed`` is the frozen,
slotted dataclass it was written for. Held to ``sigma.closed_statistics`` field by field (floats by their bits, the
per-scale dict equal and in the same order) on windows of every length up to full, and the fallbacks: a ``_Closed``
with a ``__post_init__``, without slots, or of other fields is called as the reference calls it.
"""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import pytest

from apps.engine.estimators import sigma

_estimators = pytest.importorskip("apps.engine.estimators._estimators")

NS = 1_000_000_000
FIELDS = ("n", "elapsed_s", "rv", "bv", "per_scale")


def bits(x):
    if isinstance(x, float):
        return ("nan",) if math.isnan(x) else ("f", struct.pack("<d", x))
    if isinstance(x, tuple):
        return tuple(bits(v) for v in x)
    if isinstance(x, dict):
        return [(bits(k), bits(v)) for k, v in x.items()]
    return (type(x).__name__, x)


def same(got, ref):
    assert type(got) is type(ref)
    for f in FIELDS:
        assert bits(getattr(got, f)) == bits(getattr(ref, f)), f


def feed(est, n, seed):
    rng = np.random.default_rng(seed)
    ts, log_mid = 1_700_000_000 * NS, math.log(60_000.0)
    for _ in range(n):
        ts += int(rng.integers(NS // 20, 2 * NS))
        log_mid += float(rng.normal(0.0, 2e-4))
        est.update(ts, math.exp(log_mid), float(rng.exponential(0.05)) if rng.random() < 0.3 else 0.0)
        yield


def reference(est):
    p = est.params
    return sigma.closed_statistics(list(est._returns), list(est._durations), p.scales, p.headline_scale)


def test_the_closed_statistics_equal_the_reference():
    est = _estimators.SigmaEstimator(sigma.SigmaParams(window_buckets=120, target_bucket_s=1.0))
    checked = 0
    for i, _ in enumerate(feed(est, 3000, 1)):
        if i % 7 == 0:
            same(est._compute_closed(), reference(est))
            checked += 1
    assert len(est._returns) == 120 and checked > 400
    c = est._compute_closed()
    assert type(c) is sigma._Closed
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.n = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _WithPost:
    n: int
    elapsed_s: float
    rv: float
    bv: float
    per_scale: dict

    def __post_init__(self):
        _WithPost.calls += 1


_WithPost.calls = 0


@dataclasses.dataclass(frozen=True)
class _NoSlots:
    n: int
    elapsed_s: float
    rv: float
    bv: float
    per_scale: dict


@dataclasses.dataclass(frozen=True, slots=True)
class _OtherFields:
    n: int
    elapsed_s: float
    rv: float
    per_scale: dict
    bv: float


@pytest.mark.parametrize("cls", [_WithPost, _NoSlots, _OtherFields])
def test_another_closed_class_is_called(monkeypatch, cls):
    est = _estimators.SigmaEstimator(sigma.SigmaParams(window_buckets=60, target_bucket_s=1.0))
    for _ in feed(est, 400, 2):
        pass
    ref = reference(est)
    est._compute_closed()  # the plain class, by its slots
    expected = cls(ref.n, ref.elapsed_s, ref.rv, ref.bv, ref.per_scale)  # as closed_statistics calls it
    _WithPost.calls = 0
    monkeypatch.setattr(sigma, "_Closed", cls)
    got = est._compute_closed()
    assert type(got) is cls
    for f in FIELDS:
        assert bits(getattr(got, f)) == bits(getattr(expected, f)), f
    if cls is _WithPost:
        assert _WithPost.calls == 1
    monkeypatch.setattr(sigma, "_Closed", type(ref))
    same(est._compute_closed(), ref)  # back to the plain class
