"""The drift observations in C (``MarketStep._drift_observations``) against the reference method, bit for bit.

``MarketEstimators._drift_observations`` (the momentum, trade-flow and microprice observations of the Kalman drift,
every ``drift_obs_interval_s``) runs in C inside the compiled ``MarketStep.on_bbo`` when the MarketEstimators' own
``_drift_observations`` and ``_flow_now`` are the reference's. A subclass that overrides ``_drift_observations``
(here: by calling the reference) makes the step call the method instead, so two compiled estimator sets fed the same
events differ only in which of the two ran. After every event the drift's whole state, the flow value the
microprice reads and the next observation time must be the same bits.

The cases a recording seldom takes run too: a parameter set without the flow term, an empty microprice window, a
mids container that is not a deque, a drift that is the reference class, a mid ratio that log() refuses, and a
configured interval that is not a float (each takes the reference path, with the same result).
"""

from __future__ import annotations

import struct
from collections import deque
from pathlib import Path

import pytest

from apps.engine.estimators import _estimators, market
from apps.engine.estimators import drift as drift_mod
from apps.engine.estimators.market import EstimatorConfig, MarketEstimators
from apps.engine.market.events import BestBidAsk
from apps.marketdata.recordings import load_binance_raw
from tests.engine.estimators.conftest import COMPILED

pytestmark = pytest.mark.skipif(market._compiled is None, reason="the compiled MarketStep is not in use")

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
USDM = ("hftbacktest-binance-usdm-btcusdt-20240808", ("raw/usdm_btcusdt_20240808.gz",))
N_EVENTS = 25_000


class ByReference(MarketEstimators):
    """The step's drift observations through the reference method (an override the step must honour)."""

    def _drift_observations(self, ts, mid):
        MarketEstimators._drift_observations(self, ts, mid)


def b(x):
    if isinstance(x, float):
        return struct.pack("<d", x)
    return x


def drift_state(est):
    d = est.drift
    return tuple(
        b(v)
        for v in (
            d._theta,
            d._noise_var,
            d._m,
            d._p,
            d._nis_mean,
            d._g2_theta,
            d._g2_noise,
            d._last_nis,
            d._n_obs,
            d._theta_at_bound,
            d._last_ns,
            est._flow_value,
            est._next_drift_ns,
        )
    )


def build(cls, monkeypatch, **config):
    with monkeypatch.context() as m:
        for mod, name in COMPILED:
            m.setattr(market, name, getattr(_estimators, name))
        est = cls(tick_size=0.1, config=EstimatorConfig(**config)) if config else cls(tick_size=0.1)
    assert isinstance(est._on_bbo.__self__, _estimators.MarketStep)
    assert est._on_bbo.__self__.drift_in_c == (cls is MarketEstimators)
    assert type(est.drift) is _estimators.KalmanDrift
    return est


@pytest.fixture(scope="module")
def events():
    name, files = USDM
    if not (DATA / name).is_dir():
        pytest.skip(f"shared recording {name} not present")
    return load_binance_raw(DATA / name, files)[:N_EVENTS]


def lockstep(a, r, events):
    observed = 0
    for i, e in enumerate(events):
        before = a._next_drift_ns
        a.on_event(e)
        r.on_event(e)
        assert drift_state(a) == drift_state(r), f"event {i} ({type(e).__name__})"
        observed += a._next_drift_ns != before
    return observed


@pytest.mark.parametrize(
    "config",
    [{}, {"flow_drift_per_s": 0.0}, {"drift_obs_interval_s": 0.2, "momentum_lookback_s": 2.0}],
    ids=["defaults", "no-flow-term", "fast"],
)
def test_the_c_drift_observations_are_the_references_on_a_recording(events, monkeypatch, config):
    a, r = build(MarketEstimators, monkeypatch, **config), build(ByReference, monkeypatch, **config)
    observed = lockstep(a, r, events)
    assert observed > 50  # the observations did run (about one a second of the recording)
    assert a.drift.n_obs > 50


def bbo(ts, bid, ask, bs=1.0, asz=2.0):
    return BestBidAsk(ts_local_ns=ts, ts_exch_ns=ts, bid_px=bid, bid_size=bs, ask_px=ask, ask_size=asz)


class Mids(deque):
    """A deque subclass: the step reads it through its methods, and the drift observations take the reference."""


def test_the_fallbacks_give_the_references_result(monkeypatch):
    s = 1_000_000_000
    feed = [bbo(t * s // 4, 100.0 + 0.01 * (t % 7), 100.02 + 0.01 * (t % 7)) for t in range(400)]
    cases = {
        "a deque subclass of mids": lambda est: setattr(est, "_mids", Mids(est._mids)),
        "the reference drift": lambda est: setattr(est, "drift", drift_mod.PyKalmanDrift(est.drift.params)),
    }
    for what, change in cases.items():
        a, r = build(MarketEstimators, monkeypatch), build(ByReference, monkeypatch)
        for est in (a, r):
            est.on_event(feed[0])
            change(est)
        assert a._on_bbo.__self__.drift_in_c  # the step decides per call (the mids' and the drift's types)
        for i, e in enumerate(feed[1:]):
            a.on_event(e)
            r.on_event(e)
            assert drift_state(a) == drift_state(r), (what, i)
        assert a.drift.n_obs > 10, what


def test_a_zero_stored_mid_runs_the_reference(monkeypatch):
    """A stored mid of 0.0 (the reference divides by it) takes the reference path: the same outcome, the same state."""
    s = 1_000_000_000
    a, r = build(MarketEstimators, monkeypatch), build(ByReference, monkeypatch)
    feed = [bbo(t * s // 4, 50.0 + 0.5 * (t % 3), 50.5 + 0.5 * (t % 3)) for t in range(400)]
    for est in (a, r):
        for e in feed[:300]:
            est.on_event(e)
    assert drift_state(a) == drift_state(r)
    assert a.sigma.sigma_for_inventory > 0  # so the momentum observation is reached
    outcome = {}
    for name, est in (("c", a), ("ref", r)):
        est._mids.appendleft((est._mids[0][0] - 1, 0.0))
        try:
            for e in feed[300:]:
                est.on_event(e)
            outcome[name] = None
        except ZeroDivisionError as exc:
            outcome[name] = str(exc)
    assert outcome["c"] == outcome["ref"]
    assert drift_state(a) == drift_state(r)
