from __future__ import annotations

import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.control.permissions import can_read
from apps.live.broadcast import session_group
from apps.live.layers import LIVE_LAYER

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

# Snapshots sent to one browser and not yet acknowledged. A browser acks each snapshot once it has drawn it; while
# this many are unacknowledged, newer snapshots replace each other here (latest wins) instead of queueing in the
# server's socket buffer, so a slow browser gets fewer, fresh updates and never stale ones.
MAX_IN_FLIGHT = 2
# An ack not back after this long frees its place (a client that does not ack still gets an update this often).
ACK_TIMEOUT_S = 2.0
MAX_CLIENT_MESSAGE = 200  # bytes: the browser sends nothing but acks


@database_sync_to_async
def _refusal(user, session_id: int) -> int | None:
    """The close code refusing this user this session's page, or None: one trip to the database thread for both
    checks (a role is read from the user's groups), so a crowd of handshakes does not queue twice."""
    from apps.trading.models import TradingSession

    if not can_read(user):
        return CLOSE_FORBIDDEN
    if not TradingSession.objects.filter(pk=session_id).exists():
        return CLOSE_NOT_FOUND
    return None


class SessionLiveConsumer(AsyncWebsocketConsumer):
    """Forwards a session's live JSON to an authenticated browser: snapshots (coalesced per browser) and events.

    Messages to the browser (text frames, JSON):

    * ``{"type": "snapshot", "seq": n, "snapshot": {...}}``: the session's complete state (latest wins);
    * ``{"type": "event", "event": {"kind": ..., ...}}``: a discrete event (params marker, audit row, status,
      alert), always forwarded, in order.

    From the browser only ``{"ack": n}`` is read (flow control); anything else is ignored: operator actions go
    through HTTP views (CSRF, audit), never over this socket.

    Refused (closed before the handshake completes): a logged-out user (4401), a user who may not read the console
    (4403: no console role), a session that does not exist (4404). Reading follows the HTTP pages: the viewer
    role or above (apps.control.permissions).
    """

    channel_layer_alias = LIVE_LAYER  # pub/sub: one Redis message per snapshot per web process (apps.live.layers)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        refusal = await _refusal(user, session_id)
        if refusal is not None:
            await self.close(code=refusal)
            return
        self.pending: str | None = None  # the newest snapshot not yet sent (JSON text)
        self.in_flight: dict[int, float] = {}  # seq -> monotonic time sent
        self.coalesced = 0
        self.group = session_group(session_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not text_data or len(text_data) > MAX_CLIENT_MESSAGE:
            return
        try:
            seq = json.loads(text_data).get("ack")
        except (ValueError, AttributeError):
            return
        if isinstance(seq, int) and not isinstance(seq, bool):
            # an ack covers every snapshot up to it (the browser may have skipped drawing older ones)
            for s in [s for s in self.in_flight if s <= seq]:
                del self.in_flight[s]
            await self._pump()

    async def session_snapshot(self, message: dict) -> None:
        """The session's latest snapshot from the publisher: keep only the newest until the browser has room."""
        if self.pending is not None:
            self.coalesced += 1
        self.pending = message["frame"]  # the publisher built the frame once for every browser
        self.pending_seq = int(message["seq"])
        await self._pump()

    async def _pump(self) -> None:
        if self.pending is None:
            return
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            now = time.monotonic()
            for s in [s for s, t in self.in_flight.items() if now - t > ACK_TIMEOUT_S]:
                del self.in_flight[s]
            if len(self.in_flight) >= MAX_IN_FLIGHT:
                return
        text, self.pending = self.pending, None
        self.in_flight[self.pending_seq] = time.monotonic()
        await self.send(text_data=text)

    async def session_event(self, message: dict) -> None:
        """A discrete event (see ``apps.live.broadcast.publish_session_event``), forwarded as JSON."""
        await self.send(text_data=json.dumps({"type": "event", "event": message["event"]}, default=str))


class RefusingConsumer(AsyncWebsocketConsumer):
    """Any WebSocket path that is not a live session (a malformed id, an unknown path): closed, no traceback."""

    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)
