from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.control.permissions import can_read
from apps.live.broadcast import session_group

# the role comes from the user's groups: a database query, so not on the event loop
_can_read = database_sync_to_async(can_read)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _session_exists(session_id: int) -> bool:
    from apps.trading.models import TradingSession

    return TradingSession.objects.filter(pk=session_id).exists()


class SessionLiveConsumer(AsyncWebsocketConsumer):
    """Forwards a session's rendered live-state fragments to an authenticated browser (htmx ws extension).

    Refused (closed before the handshake completes): a logged-out user (4401), a user who may not read the console
    (4403: no console role), a session that does not exist (4404). Reading follows the HTTP pages: the viewer
    role or above (apps.control.permissions).
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await _can_read(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        if not await _session_exists(session_id):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = session_group(session_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Read-only channel: operator actions go through HTTP views (CSRF, audit), never over this socket.
        return

    async def session_html(self, event: dict) -> None:
        await self.send(text_data=event["html"])

    async def session_event(self, message: dict) -> None:
        """A discrete event (see ``apps.live.broadcast.publish_session_event``), forwarded as JSON."""
        import json

        await self.send(text_data=json.dumps({"event": message["event"]}))


class RefusingConsumer(AsyncWebsocketConsumer):
    """Any WebSocket path that is not a live session (a malformed id, an unknown path): closed, no traceback."""

    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)
