"""The one way other apps push to browsers: a session's snapshot (latest wins) and discrete events (never dropped).

Producers build JSON; consumers only forward (a consumer never touches the database per message).

* :func:`publish_session_state` hands a session's complete snapshot (:mod:`apps.live.snapshot`) to this process's
  publisher thread and returns at once: the caller (the quoting loop) never waits for Redis, let alone a browser.
  The thread keeps one slot per session; a snapshot offered while the previous one is still waiting replaces it
  (latest wins: each snapshot is complete). It serialises the JSON once and ``group_send``\\s it to the session's
  group; each browser's consumer then coalesces again for that browser (see ``apps.live.consumers``).
* :func:`publish_session_event` sends a discrete event at once (parameter markers, audit rows, alerts, status).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer

from apps.live.layers import LIVE_LAYER

logger = logging.getLogger(__name__)


def session_group(session_id: int) -> str:
    return f"session.{session_id}"


def to_json(payload: Any) -> str:
    """Compact JSON that a browser's ``JSON.parse`` accepts: a NaN or infinity anywhere becomes null."""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(payload), separators=(",", ":"), allow_nan=False, default=str)


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


@dataclass
class PublisherStats:
    offered: int = 0
    sent: int = 0
    replaced: int = 0  # offered snapshots that a newer one replaced before it was sent
    failed: int = 0
    send_s: list[float] = field(default_factory=list)  # group_send durations (bounded: the last 10 000)


class SnapshotPublisher:
    """A daemon thread with its own event loop that ``group_send``\\s the latest snapshot of each session."""

    def __init__(self, layer_alias: str = LIVE_LAYER) -> None:
        self.layer_alias = layer_alias
        self._cond = threading.Condition()
        self._slots: dict[int, dict[str, Any]] = {}
        self._events: list[tuple[int, dict[str, Any]]] = []  # in order, never coalesced
        self._seq: dict[int, int] = {}
        self._busy = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.stats = PublisherStats()

    def offer(self, session_id: int, snapshot: dict[str, Any]) -> int:
        """Queue ``snapshot`` as the session's latest (O(1), never blocks on I/O). Returns its sequence number."""
        with self._cond:
            self._ensure_thread()
            seq = self._seq.get(session_id, 0) + 1
            self._seq[session_id] = seq
            snapshot["seq"] = seq
            if session_id in self._slots:
                self.stats.replaced += 1
            self._slots[session_id] = snapshot
            self.stats.offered += 1
            self._cond.notify()
        return seq

    def offer_event(self, session_id: int, event: dict[str, Any]) -> None:
        """Queue a discrete event for the session's browsers (sent in order, before any newer snapshot)."""
        with self._cond:
            self._ensure_thread()
            self._events.append((session_id, event))
            self._cond.notify()

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until every offered snapshot has been sent (tests, process exit)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._slots or self._events or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _ensure_thread(self) -> None:
        # a forked child (a prefork Celery worker) inherits the object but not the thread
        pid = os.getpid()
        if self._thread is not None and self._thread.is_alive() and self._pid == pid:
            return
        if self._pid != pid:
            self._busy = False
        self._pid = pid
        self._thread = threading.Thread(target=self._run, name="live-publisher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        layer = get_channel_layer(self.layer_alias)
        while True:
            with self._cond:
                while not self._slots and not self._events:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                events, self._events = self._events, []
                batch, self._slots = self._slots, {}
                self._busy = True
            for session_id, event in events:
                message = {"type": "session.event", "event": event}
                self._send(loop, layer, session_id, message, "event")
            for session_id, snapshot in batch.items():
                # the browser's frame, serialised once here for every browser of every web process
                frame = f'{{"type":"snapshot","seq":{int(snapshot["seq"])},"snapshot":{to_json(snapshot)}}}'
                message = {"type": "session.snapshot", "seq": snapshot["seq"], "frame": frame}
                t0 = time.perf_counter()
                if self._send(loop, layer, session_id, message, "snapshot"):
                    self.stats.sent += 1
                if len(self.stats.send_s) < 10_000:
                    self.stats.send_s.append(time.perf_counter() - t0)

    def _send(self, loop: asyncio.AbstractEventLoop, layer: Any, session_id: int, message: dict, what: str) -> bool:
        try:
            loop.run_until_complete(layer.group_send(session_group(session_id), message))
            return True
        except Exception as exc:  # noqa: BLE001 - Redis down: the next snapshot tries again
            self.stats.failed += 1
            logger.warning("session %s: live %s not sent (%s)", session_id, what, exc)
            return False


publisher = SnapshotPublisher()
atexit.register(publisher.flush, 1.0)


def render_session_state(session_id: int, state: dict[str, Any], status: str) -> str:
    """The live tiles as HTML (the page's first paint; the browser updates them from snapshots). ``state`` is a
    snapshot or a bare ``StrategyCore.state()`` dict."""
    from django.template.loader import render_to_string

    flat = state.get("state", {}) if state.get("v") else state
    return render_to_string(
        "dashboard/partials/live_state.html", {"state": flat, "status": status, "session_id": session_id}
    )


def publish_session_state(session_id: int, state: dict[str, Any], status: str) -> None:
    """Publish a session's latest snapshot (non-blocking, latest wins). ``state`` is a snapshot from
    :func:`apps.live.snapshot.build_snapshot`, or a bare ``StrategyCore.state()`` dict (wrapped as a partial one)."""
    from apps.live.snapshot import snapshot_from_state

    snapshot = dict(state) if state.get("v") else snapshot_from_state(session_id, state, status)
    snapshot["status"] = status
    publisher.offer(session_id, snapshot)


def publish_session_event(session_id: int, event: dict[str, Any]) -> None:
    """Push a discrete event to the session's browsers as JSON: ``{"kind": ..., "ts_ns": ..., ...}``. Kinds so far:
    ``"params"`` (a parameter change or revert: ``version``, ``changes`` {field: [old, new]}, ``actor``, ``reason``),
    ``"audit"`` (an audit row: ``action``, ``actor``, ``reason``), ``"status"`` (``status``), ``"alert"``. The live
    page draws ``params`` events as chart markers. Events are never coalesced away; like snapshots they are sent by
    the publisher thread, so the caller (a view after commit, the loop) never waits on Redis."""
    publisher.offer_event(session_id, event)


__all__ = [
    "publish_session_event",
    "publish_session_state",
    "publisher",
    "render_session_state",
    "session_group",
    "to_json",
]
