"""The clock estimator: a robust local-minus-exchange offset (per-bucket minimum, median of the bucket minima) and a
median round trip, on synthetic stamps whose true offset and delays are known."""

from __future__ import annotations

import random

import pytest

from apps.engine.market.clock import ClockEstimator, ClockParams

MS = 1_000_000
S = 1_000_000_000


def _feed(est: ClockEstimator, offset_ms: float, seconds: int, rng: random.Random, per_s: int = 50) -> None:
    """Messages every 1/per_s s: exchange stamp t, received at t + delay (2 ms floor, exponential tail, 3 % bursts
    of 200-900 ms) on a local clock that runs ``offset_ms`` ahead."""
    t0 = 1_700_000_000 * S
    for i in range(seconds * per_s):
        exch = t0 + i * S // per_s
        delay = 2 * MS + round(rng.expovariate(1 / (3 * MS)))
        if rng.random() < 0.03:
            delay += rng.randint(200, 900) * MS
        est.on_stamp(exch + delay + round(offset_ms * MS), exch)


@pytest.mark.parametrize("offset_ms", [0.0, 250.0, -1273.0, 1500.0])
def test_offset_is_the_true_offset_plus_the_delay_floor(offset_ms):
    est = ClockEstimator()
    _feed(est, offset_ms, 40, random.Random(7))
    assert est.offset_ns is not None
    # each bucket's minimum sits within a fraction of a ms above the 2 ms floor: bursts move nothing
    assert offset_ms + 2.0 <= est.offset_ns / MS <= offset_ms + 2.5
    assert est.n_samples == 2000
    # one raw sample can be far off; the estimate is not
    assert est.status()["clock_offset_ms"] == pytest.approx(est.offset_ns / MS, abs=1e-3)


def test_a_stretch_of_late_messages_does_not_move_the_estimate_but_a_real_step_does():
    est = ClockEstimator(ClockParams(bucket_s=1.0, window_buckets=9))
    t = 1_700_000_000 * S
    for i in range(90):  # 9 s at 10 msg/s, 5 ms delay, no offset
        est.on_stamp(t + i * S // 10 + 5 * MS, t + i * S // 10)
    assert est.offset_ns == 5 * MS
    for i in range(90, 120):  # 3 s in which every message is 700 ms late (a stalled socket): a minority of buckets
        est.on_stamp(t + i * S // 10 + 700 * MS, t + i * S // 10)
    assert est.offset_ns == 5 * MS
    for i in range(120, 240):  # the local clock steps 2 s ahead and stays there: the median follows
        est.on_stamp(t + i * S // 10 + 2005 * MS, t + i * S // 10)
    assert est.offset_ns == 2005 * MS


def test_round_trip_is_the_median_of_the_window():
    est = ClockEstimator(ClockParams(rtt_window=5))
    assert est.rtt_ns is None and est.status()["rtt_ms"] is None
    for rtt_ms in (10, 12, 11, 400, 13):
        est.on_round_trip(rtt_ms * MS)
    assert est.rtt_ns == 12 * MS and est.rtt_max_ns == 400 * MS
    for rtt_ms in (9, 9, 9, 9, 9):  # the window forgets the old samples
        est.on_round_trip(rtt_ms * MS)
    assert est.rtt_ns == 9 * MS and est.rtt_max_ns == 9 * MS and est.n_rtt == 10


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="bucket_s"):
        ClockParams(bucket_s=0)
    with pytest.raises(ValueError, match="window_buckets"):
        ClockParams(window_buckets=0)
    with pytest.raises(ValueError, match="rtt_window"):
        ClockParams(rtt_window=1.5)  # type: ignore[arg-type]
    est = ClockEstimator()
    with pytest.raises(ValueError, match="ts_exch_ns"):
        est.on_stamp(5, 0)
    with pytest.raises(ValueError, match="rtt_ns"):
        est.on_round_trip(-1)
    assert est.offset_ns is None and est.n_samples == 0
