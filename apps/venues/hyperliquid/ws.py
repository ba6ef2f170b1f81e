"""The WebSocket connection: subscriptions, the venue's ping, reconnect with back-off, a connection state.

One background thread owns the socket. It connects, (re)sends every subscription, sends ``{"method": "ping"}``
every ``heartbeat_s`` and treats ``2 × heartbeat_s`` of silence as a dead connection. After any drop it waits a
:class:`~apps.engine.market.feeds.Backoff` delay (exponential, jittered, capped) and reconnects. Every received
message is queued as ``(local_ts_ns, epoch, message)``; ``epoch`` counts successful connects, so the consumer
knows a reconnect happened and must reconcile (:meth:`HyperliquidVenue.poll`).

Clock: the same thread feeds a :class:`~apps.engine.market.clock.ClockEstimator` at receipt (the most exact local
time there is): every message carrying the venue's ``time`` (``l2Book``, ``bbo``, ``trades``, live ``userFills`` and
``orderUpdates``; see :func:`exchange_time_ms`) is an offset sample, and every ping, sent every ``rtt_interval_s``
(and at once on connect), is timed to its pong for the round trip. The HTTP client adds its round trips through
:meth:`HyperliquidSocket.record_round_trip` from the loop's thread; a lock keeps the two writers apart.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from enum import StrEnum

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from apps.engine.market.clock import ClockEstimator
from apps.engine.market.feeds import Backoff

logger = logging.getLogger(__name__)


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


def exchange_time_ms(msg: dict) -> int | None:
    """The venue's stamp (ms) of a stream message, or ``None`` when it carries none that says *now*.

    ``l2Book``/``bbo`` carry ``data.time``; ``trades`` a ``time`` per trade (the latest is used); ``userFills`` a
    ``time`` per fill, but the ``isSnapshot`` replay sent on subscribing is history, not a stamp of now, so it is
    skipped; ``orderUpdates`` a ``statusTimestamp`` per update."""
    channel, data = msg.get("channel"), msg.get("data")
    try:
        if channel in ("l2Book", "bbo") and isinstance(data, dict):
            t = data.get("time")
        elif channel == "trades" and isinstance(data, list):
            t = max((int(x["time"]) for x in data if isinstance(x, dict) and "time" in x), default=None)
        elif channel == "userFills" and isinstance(data, dict) and not data.get("isSnapshot"):
            fills = data.get("fills", [])
            t = max((int(f["time"]) for f in fills if isinstance(f, dict) and "time" in f), default=None)
        elif channel == "orderUpdates" and isinstance(data, list):
            stamps = (int(u["statusTimestamp"]) for u in data if isinstance(u, dict) and "statusTimestamp" in u)
            t = max(stamps, default=None)
        else:
            return None
        t = int(t) if t is not None else None
    except (TypeError, ValueError):
        return None
    return t if t is not None and t > 0 else None


class HyperliquidSocket:
    def __init__(
        self,
        url: str,
        subscriptions: list[dict],
        *,
        backoff: Backoff,
        heartbeat_s: float = 20.0,
        rtt_interval_s: float = 5.0,
        clock: ClockEstimator | None = None,
        name: str = "hyperliquid-ws",
    ) -> None:
        """``heartbeat_s``: 2 × this of silence is a dead connection (and a ping goes out at least this often).
        ``rtt_interval_s`` (default 5 s): a ping is timed to its pong at least this often, for the round trip.
        ``clock``: the estimator fed here (a fresh one by default)."""
        if not (0 < rtt_interval_s < float("inf")):
            raise ValueError(f"rtt_interval_s must be a positive number of seconds, got {rtt_interval_s!r}")
        self.url = url
        self.subscriptions = list(subscriptions)
        self.backoff = backoff
        self.heartbeat_s = heartbeat_s
        self.ping_every_s = min(heartbeat_s, rtt_interval_s)
        self.clock = clock or ClockEstimator()
        self._clock_lock = threading.Lock()
        self._ping_sent_ns: int | None = None  # perf_counter of the ping whose pong is awaited
        self.inbox: queue.Queue[tuple[int, int, dict]] = queue.Queue()
        self.state = ConnectionState.CLOSED
        self.epoch = 0
        self.disconnects = 0
        self.last_error = ""
        self.last_pong_ns = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.state = ConnectionState.CONNECTING
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.state = ConnectionState.CLOSED

    def wait_connected(self, epoch: int = 1, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.state is ConnectionState.CONNECTED and self.epoch >= epoch:
                return True
            time.sleep(0.01)
        return False

    def record_round_trip(self, rtt_ns: int) -> None:
        """One round trip measured elsewhere (an HTTP request to its answer), for the clock estimator."""
        with self._clock_lock:
            self.clock.on_round_trip(rtt_ns)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.state = ConnectionState.CONNECTING
            try:
                self._session()
            except (OSError, WebSocketException, TimeoutError) as exc:  # refused, 503, dropped, silent
                self.last_error = f"{type(exc).__name__}: {exc}"
            if self._stop.is_set():
                break
            self.disconnects += 1
            self.state = ConnectionState.BACKOFF
            delay = self.backoff.next_delay_s()
            logger.warning("hyperliquid ws down (%s); reconnecting in %.2fs", self.last_error, delay)
            self._stop.wait(delay)
        self.state = ConnectionState.CLOSED

    def _session(self) -> None:
        with connect(self.url, open_timeout=5, close_timeout=1) as ws:
            for sub in self.subscriptions:
                ws.send(json.dumps({"method": "subscribe", "subscription": sub}))
            self.epoch += 1
            self.backoff.reset()
            self.state = ConnectionState.CONNECTED
            last_rx = time.monotonic()
            last_ping = last_rx - self.ping_every_s  # the first ping at once: a round trip from the start
            self._ping_sent_ns = None
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_ping >= self.ping_every_s:
                    ws.send(json.dumps({"method": "ping"}))
                    # pongs carry no id: the next pong is timed from the latest ping (a pong lost by the venue then
                    # costs one sample, not a round trip stretched to the next pong)
                    self._ping_sent_ns = time.perf_counter_ns()
                    last_ping = now
                if now - last_rx > 2 * self.heartbeat_s:
                    raise TimeoutError(f"no message for {2 * self.heartbeat_s:.1f}s")
                try:
                    raw = ws.recv(timeout=min(0.2, self.heartbeat_s))
                except TimeoutError:
                    continue
                last_rx = time.monotonic()
                local_ns = time.time_ns()
                try:
                    msg = json.loads(raw)
                except ValueError:
                    logger.warning("hyperliquid ws: non-JSON message dropped")
                    continue
                if isinstance(msg, dict) and msg.get("channel") == "pong":
                    self.last_pong_ns = local_ns
                    if self._ping_sent_ns is not None:
                        self.record_round_trip(time.perf_counter_ns() - self._ping_sent_ns)
                        self._ping_sent_ns = None
                    continue
                if isinstance(msg, dict):
                    t_ms = exchange_time_ms(msg)
                    if t_ms is not None:
                        with self._clock_lock:
                            self.clock.on_stamp(local_ns, t_ms * 1_000_000)
                    self.inbox.put((local_ns, self.epoch, msg))
