"""The WebSocket connection: subscriptions, the venue's ping, reconnect with back-off, a connection state.

One background thread owns the socket. It connects, (re)sends every subscription, sends ``{"method": "ping"}``
every ``heartbeat_s`` and treats ``2 × heartbeat_s`` of silence as a dead connection. After any drop it waits a
:class:`~apps.engine.market.feeds.Backoff` delay (exponential, jittered, capped) and reconnects. Every received
message is queued as ``(local_ts_ns, epoch, message)``; ``epoch`` counts successful connects, so the consumer
knows a reconnect happened and must reconcile (:meth:`HyperliquidVenue.poll`).
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

from apps.engine.market.feeds import Backoff

logger = logging.getLogger(__name__)


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


class HyperliquidSocket:
    def __init__(
        self,
        url: str,
        subscriptions: list[dict],
        *,
        backoff: Backoff,
        heartbeat_s: float = 20.0,
        name: str = "hyperliquid-ws",
    ) -> None:
        self.url = url
        self.subscriptions = list(subscriptions)
        self.backoff = backoff
        self.heartbeat_s = heartbeat_s
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
            last_rx = last_ping = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_ping >= self.heartbeat_s:
                    ws.send(json.dumps({"method": "ping"}))
                    last_ping = now
                if now - last_rx > 2 * self.heartbeat_s:
                    raise TimeoutError(f"no message for {2 * self.heartbeat_s:.1f}s")
                try:
                    raw = ws.recv(timeout=min(0.2, self.heartbeat_s))
                except TimeoutError:
                    continue
                last_rx = time.monotonic()
                try:
                    msg = json.loads(raw)
                except ValueError:
                    logger.warning("hyperliquid ws: non-JSON message dropped")
                    continue
                if isinstance(msg, dict) and msg.get("channel") == "pong":
                    self.last_pong_ns = time.time_ns()
                    continue
                if isinstance(msg, dict):
                    self.inbox.put((time.time_ns(), self.epoch, msg))
