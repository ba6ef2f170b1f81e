"""The one way other apps push to browsers: render a partial, then ``group_send`` it to the session's group.

Producers render; consumers only forward (so a consumer never touches the database per message).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.template.loader import render_to_string


def session_group(session_id: int) -> str:
    return f"session.{session_id}"


def render_session_state(session_id: int, state: dict[str, Any], status: str) -> str:
    return render_to_string(
        "dashboard/partials/live_state.html", {"state": state, "status": status, "session_id": session_id}
    )


def publish_session_state(session_id: int, state: dict[str, Any], status: str) -> None:
    html = render_session_state(session_id, state, status)
    async_to_sync(get_channel_layer().group_send)(session_group(session_id), {"type": "session.html", "html": html})


def publish_session_event(session_id: int, event: dict[str, Any]) -> None:
    """Push a discrete event to the session's browsers as JSON: ``{"kind": ..., "ts_ns": ..., ...}``. Kinds so far:
    ``"params"`` (a parameter change or revert: ``version``, ``changes`` {field: [old, new]}, ``actor``, ``reason``),
    ``"audit"`` (an audit row), ``"alert"``. The live page draws ``params`` events as chart markers."""
    async_to_sync(get_channel_layer().group_send)(session_group(session_id), {"type": "session.event", "event": event})
