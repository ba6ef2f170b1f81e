from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from apps.live.broadcast import session_group

CLOSE_UNAUTHENTICATED = 4401


class SessionLiveConsumer(AsyncWebsocketConsumer):
    """Forwards a session's rendered live-state fragments to an authenticated browser (htmx ws extension)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = session_group(int(self.scope["url_route"]["kwargs"]["session_id"]))
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
