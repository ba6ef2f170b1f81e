"""The compiled Kalman drift filter (``_estimators.KalmanDrift``: ``update`` and ``snapshot`` in C) against its
reference :class:`apps.engine.estimators.drift.PyKalmanDrift`, in lockstep, bit for bit: every state field after every
call and every snapshot, on generated observation streams from all three sources (with and without an explicit
variance), with adaptation on and off, long gaps (stale), bursts at the same ns, inconsistent readings (a FAILED
filter) and θ driven into its bounds; and the same exception, with the same state left behind, where the reference
raises. On the shared recordings the drift's snapshots are compared with the rest of the market estimators by
tests/engine/estimators/test_estimators_equivalence.py."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from apps.engine.estimators import _estimators
from apps.engine.estimators.drift import DriftParams, PyKalmanDrift

SOURCES = ("trade_flow", "momentum", "microprice")
FIELDS = (
    "_theta",
    "_noise_var",
    "_m",
    "_p",
    "_last_ns",
    "_n_obs",
    "_nis_mean",
    "_g2_theta",
    "_g2_noise",
    "_theta_at_bound",
    "_last_nis",
)


def bits(x):
    if isinstance(x, float):
        return ("f", struct.pack("<d", x))
    if isinstance(x, (tuple, list)):
        return tuple(bits(v) for v in x)
    if isinstance(x, dict):
        return tuple((k, bits(v)) for k, v in x.items())
    if hasattr(x, "__dataclass_fields__"):
        return (type(x).__name__, tuple((f, bits(getattr(x, f))) for f in x.__dataclass_fields__))
    return (type(x).__name__, x)


def state(f):
    return tuple((name, bits(getattr(f, name))) for name in FIELDS)


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", bits(fn(*args, **kwargs)))
    except (ArithmeticError, ValueError, TypeError) as e:
        return ("raised", type(e).__name__, str(e))


GAPS_NS = [0, 1_000, 5_000_000, 200_000_000, 3_000_000_000, 40_000_000_000]  # same ns, bursts, a stale gap
PARAMS = [
    DriftParams(),
    DriftParams(adapt_rate=0.0),
    DriftParams(adapt_rate=0.3, warmup_obs=0, nis_halflife_obs=3.0),
    DriftParams(theta_per_s=0.5, theta_min_per_s=0.4, theta_max_per_s=0.6, adapt_rate=0.5, warmup_obs=2),
    DriftParams(stale_after_s=0.5, nis_fail_above=1.2, warmup_obs=3),
]


@pytest.mark.parametrize("params", PARAMS, ids=range(len(PARAMS)))
@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_drift_filter_matches_the_reference_in_lockstep(params, seed):
    rng = np.random.default_rng(seed)
    ref, cmp = PyKalmanDrift(params), _estimators.KalmanDrift(params)
    assert state(cmp) == state(ref)
    t = int(1_700_000_000e9) + int(rng.integers(0, 10**9))
    truth = 0.0
    for i in range(1500):
        gap = rng.choice(GAPS_NS, p=[0.1, 0.1, 0.4, 0.3, 0.08, 0.02])
        t += int(gap)
        truth = 0.98 * truth + 2e-6 * rng.standard_normal()
        source = SOURCES[int(rng.integers(0, 3))]
        scale = 1e-5 if rng.random() > 0.05 else 3e-3  # now and then a wild reading (NIS far above 1)
        z = float(truth + scale * rng.standard_normal())
        kwargs = {"obs_var": float(10 ** rng.uniform(-12, -8))} if rng.random() < 0.3 else {}
        assert outcome(cmp.update, t, source, z, **kwargs) == outcome(ref.update, t, source, z, **kwargs), i
        assert state(cmp) == state(ref), i
        if i % 3 == 0:
            now = t + int(rng.choice([0, 10_000_000, 2_000_000_000, 90_000_000_000]))
            assert bits(cmp.snapshot(now)) == bits(ref.snapshot(now)), i
            assert outcome(cmp.expected_return, 7.5, now) == outcome(ref.expected_return, 7.5, now), i
            assert outcome(cmp.predict, now) == outcome(ref.predict, now), i
        if i % 97 == 0:
            t += 1000
            cmp.advance(t)
            ref.advance(t)
            assert state(cmp) == state(ref), i
    assert ref.n_obs > 1000
    assert bits(cmp.snapshot(t - 5)) == bits(ref.snapshot(t - 5))  # a read before the last update


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((10**9, "momentum", math.nan), {}),
        ((10**9, "momentum", math.inf), {}),
        ((10**9, "momentum", "1e-5"), {}),
        ((10**9, "momentum", 1), {}),  # an int reading: the reference accepts it
        ((10**9, "momentum", True), {}),
        ((10**9, "sideways", 1e-5), {}),  # an unknown source
        ((10**9, "sideways", 1e-5), {"obs_var": 1e-10}),  # an explicit variance needs no known source
        ((10**9, "momentum", 1e-5), {"obs_var": 0.0}),
        ((10**9, "momentum", 1e-5), {"obs_var": -1e-10}),
        ((10**9, "momentum", 1e-5), {"obs_var": math.nan}),
        ((10**9, "momentum", 1e-5), {"obs_var": 1}),
        ((10**9 - 1, "momentum", 1e-5), {}),  # before the last update: time went backwards
        ((2**63, "momentum", 1e-5), {}),  # past int64: the reference's path
        ((10**9 + 0.5, "momentum", 1e-5), {}),  # a float time
    ],
)
def test_the_compiled_drift_filter_raises_where_the_reference_does_and_leaves_the_same_state(args, kwargs):
    params = DriftParams(warmup_obs=0)
    ref, cmp = PyKalmanDrift(params), _estimators.KalmanDrift(params)
    for f in (ref, cmp):
        f.update(10**9, "momentum", 2e-5)
        f.update(10**9, "microprice", 1e-5)
    got, want = outcome(cmp.update, *args, **kwargs), outcome(ref.update, *args, **kwargs)
    if want[0] == "ok" and isinstance(args[0], float):
        # the reference keeps a float time; the compiled filter holds int64 ns and refuses one when storing it
        assert got[:2] == ("raised", "TypeError") and "_last_ns takes an integer of ns" in got[2]
        return
    if want[0] == "ok" and args[0] >= 2**63:
        assert got[:2] == ("raised", "OverflowError")  # a time past int64 (the year 2262): refused, not wrapped
        return
    assert got == want
    assert state(cmp) == state(ref)


def test_the_compiled_drift_filter_keeps_its_name_params_and_reads():
    params = DriftParams(adapt_rate=0.0)
    ref, cmp = PyKalmanDrift(params, name="drift_b"), _estimators.KalmanDrift(params, name="drift_b")
    assert cmp.params is params and cmp.name == "drift_b"
    for f in (ref, cmp):
        f.update(5 * 10**9, "trade_flow", 3e-5)
    for attr in ("mean_per_s", "var_per_s2", "theta_per_s", "process_noise_var", "stationary_std_per_s", "n_obs"):
        assert bits(getattr(cmp, attr)) == bits(getattr(ref, attr)), attr
    assert cmp.snapshot(6 * 10**9).name == "drift_b"


def test_replacing_the_compiled_filters_params_is_read_by_its_next_update():
    """The compiled filter caches what ``update`` reads of its parameters; assigning new ones (as the reference's plain
    attribute allows) must take effect exactly as in the reference."""
    ref, cmp = PyKalmanDrift(DriftParams(adapt_rate=0.0)), _estimators.KalmanDrift(DriftParams(adapt_rate=0.0))
    t = 10**12
    for i in range(40):
        if i == 20:
            other = DriftParams(adapt_rate=0.4, warmup_obs=0, obs_var_momentum=1e-9, theta_min_per_s=0.01)
            ref.params = other
            cmp.params = other
        t += 250_000_000
        z = 1e-5 * (-1) ** i
        assert outcome(cmp.update, t, "momentum", z) == outcome(ref.update, t, "momentum", z), i
        assert state(cmp) == state(ref), i
    assert cmp.params is other and ref._g2_noise > 0  # the adaptation ran after the swap
