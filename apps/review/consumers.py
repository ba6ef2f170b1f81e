"""WebSockets of the review app: a backtest's progress (``/ws/backtests/<run_id>/``) and every run's
(``/ws/backtests/``). The producer is :mod:`apps.review.progress`; these consumers only forward, after sending
the run's state once on connect (so a page that connects after the run ended still learns how it ended)."""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.control.permissions import can_read
from apps.review.progress import ALL_RUNS_GROUP, run_group, run_state

# the role comes from the user's groups: a database query, so not on the event loop
_can_read = database_sync_to_async(can_read)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _state(run_id: int) -> dict[str, Any] | None:
    from apps.trading.models import BacktestRun

    run = BacktestRun.objects.filter(pk=run_id).first()
    return None if run is None else run_state(run)


class BacktestProgressConsumer(AsyncWebsocketConsumer):
    """Forwards backtest progress events as JSON ``{"event": {...}}`` to a browser with a console role.

    Refused before the handshake completes: logged out (4401), no console role (4403), no such run (4404).
    Read-only: launching goes through the HTTP views (CSRF, roles)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await _can_read(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        run_id = self.scope["url_route"]["kwargs"].get("run_id")
        state = None
        if run_id is not None:
            state = await _state(int(run_id))
            if state is None:
                await self.close(code=CLOSE_NOT_FOUND)
                return
        self.group = ALL_RUNS_GROUP if run_id is None else run_group(int(run_id))
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if state is not None:
            await self.send(text_data=json.dumps({"event": state}))

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return

    async def run_progress(self, message: dict) -> None:
        await self.send(text_data=json.dumps({"event": message["event"]}))
