"""Clock offset and round-trip latency of a live feed, estimated continuously from what the feed already carries.

**Offset** (local minus exchange clock, ns): every message with an exchange stamp gives a sample
``d = ts_local_ns - ts_exch_ns = true offset + one-way delay``. The delay is never negative and is usually close to
its floor, with bursts far above it (GC pauses, a congested socket, a venue that stamps late), so the useful
statistic is a *low* one: the minimum of the samples in each bucket of ``bucket_s`` seconds of local time (the
min-filter), then the median of the last ``window_buckets`` bucket minima (so one odd bucket — a sample whose
exchange stamp came late, or a bucket of a single message — moves nothing). The result still contains the floor of
the one-way delay (it cannot be separated from the offset without the venue's help); against a skew bound of a
second that is noise, and :attr:`ClockEstimator.rtt_ns` says how large it can be (one-way ≤ RTT, about RTT/2).

**Round trip** (ns): samples from the caller (a WebSocket ping to its pong, a REST request to its answer); the
estimate is the median of the last ``rtt_window`` samples, the maximum is kept as well.

The estimate changes only when a sample arrives (readers see plain attributes, so another thread may read them
while one thread feeds the estimator). Pure: no clock of its own, no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ClockParams:
    """Windows of :class:`ClockEstimator`.

    Attributes
    ----------
    bucket_s : float
        > 0, seconds of local time per min-filter bucket. Default 1.0.
    window_buckets : int
        ≥ 1, bucket minima the offset's median is taken over (the most recent ones; buckets with no sample do not
        count, older buckets than ``window_buckets * bucket_s`` before the newest sample are dropped). Default 30.
    rtt_window : int
        ≥ 1, round-trip samples the RTT median is taken over. Default 20.
    """

    bucket_s: float = 1.0
    window_buckets: int = 30
    rtt_window: int = 20

    def __post_init__(self) -> None:
        if not (self.bucket_s > 0 and self.bucket_s < float("inf")):
            raise ValueError(f"ClockParams.bucket_s must be a positive number of seconds, got {self.bucket_s!r}")
        if isinstance(self.window_buckets, bool) or not isinstance(self.window_buckets, int) or self.window_buckets < 1:
            raise ValueError(f"ClockParams.window_buckets must be an integer >= 1, got {self.window_buckets!r}")
        if isinstance(self.rtt_window, bool) or not isinstance(self.rtt_window, int) or self.rtt_window < 1:
            raise ValueError(f"ClockParams.rtt_window must be an integer >= 1, got {self.rtt_window!r}")


def _median(values: list[int]) -> int:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2


class ClockEstimator:
    """Local-minus-exchange offset (min-filter, then median over buckets) and round-trip time (median)."""

    def __init__(self, params: ClockParams | None = None) -> None:
        self.params = params or ClockParams()
        self._bucket_ns = round(self.params.bucket_s * _NS)
        self._buckets: deque[tuple[int, int]] = deque()  # (bucket index, min sample), oldest first
        self._rtts: deque[int] = deque(maxlen=self.params.rtt_window)
        self.offset_ns: int | None = None  # None until the first stamped message
        self.last_sample_ns: int | None = None  # the latest raw sample (for display; not robust)
        self.rtt_ns: int | None = None  # None until the first round trip
        self.rtt_max_ns: int | None = None  # the largest round trip in the window
        self.n_samples = 0
        self.n_rtt = 0

    def on_stamp(self, ts_local_ns: int, ts_exch_ns: int) -> None:
        """One message: received at ``ts_local_ns`` (local clock), stamped ``ts_exch_ns`` by the venue (> 0)."""
        if ts_exch_ns <= 0:
            raise ValueError(f"ts_exch_ns must be a positive exchange stamp, got {ts_exch_ns}")
        d = ts_local_ns - ts_exch_ns
        self.n_samples += 1
        self.last_sample_ns = d
        b = ts_local_ns // self._bucket_ns
        buckets = self._buckets
        if buckets and buckets[-1][0] >= b:  # this bucket (or a late sample of an earlier one: count it here)
            idx, low = buckets[-1]
            if d >= low:
                return
            buckets[-1] = (idx, d)
        else:
            buckets.append((b, d))
            oldest = b - self.params.window_buckets + 1
            while buckets[0][0] < oldest:
                buckets.popleft()
        self.offset_ns = _median([low for _, low in buckets])

    def on_round_trip(self, rtt_ns: int) -> None:
        """One round trip of ``rtt_ns`` (a ping to its pong, a request to its answer), measured by the caller."""
        if rtt_ns < 0:
            raise ValueError(f"rtt_ns must be >= 0, got {rtt_ns}")
        self._rtts.append(rtt_ns)
        self.n_rtt += 1
        samples = list(self._rtts)
        self.rtt_ns = _median(samples)
        self.rtt_max_ns = max(samples)

    def status(self) -> dict[str, float | int | None]:
        """Milliseconds, for the dashboard: ``clock_offset_ms`` (local − exchange), ``rtt_ms``, ``rtt_max_ms``."""

        def ms(ns: int | None) -> float | None:
            return None if ns is None else round(ns / 1e6, 3)

        return {
            "clock_offset_ms": ms(self.offset_ns),
            "rtt_ms": ms(self.rtt_ns),
            "rtt_max_ms": ms(self.rtt_max_ns),
            "clock_samples": self.n_samples,
        }
