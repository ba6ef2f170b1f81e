"""The live WebSocket through the real ASGI application and the Redis channel layer."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from apps.control.services import Actor, create_paper_session
from apps.live.broadcast import publish_session_state
from mmweb.asgi import application

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def _cookie_for(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_websocket_is_refused():
    async def go():
        comm = WebsocketCommunicator(application, "/ws/sessions/1/", headers=[ORIGIN])
        connected, code = await comm.connect(timeout=10)
        await comm.disconnect()
        return connected, code

    connected, code = async_to_sync(go)()
    assert connected is False
    assert code == 4401


@pytest.mark.django_db(transaction=True)
def test_a_logged_in_browser_receives_the_sessions_live_updates(operator):
    cookie = _cookie_for(operator)
    sid, other = (create_paper_session(Actor(label="test"), name=n, seed=1, start=False).pk for n in ("a", "b"))
    state = {
        "mid": 60000.05,
        "bid_px": 59998.1,
        "ask_px": 60002.0,
        "spread_bps": 0.65,
        "kappa": 4321.0,
        "kappa_state": "ok",
        "sigma_bps": 1.01,
        "inventory": 0.01,
        "pnl": 1.5,
        "fills": 3,
    }

    async def go():
        comm = WebsocketCommunicator(application, f"/ws/sessions/{sid}/", headers=[ORIGIN, (b"cookie", cookie)])
        connected, _ = await comm.connect()
        assert connected
        await sync_to_async(publish_session_state)(sid, state, "running")
        html = await comm.receive_from(timeout=5)
        # a publish to another session's group must not reach this socket
        await sync_to_async(publish_session_state)(other, {**state, "kappa": 1.0}, "running")
        nothing = await comm.receive_nothing(timeout=0.5)
        await comm.disconnect()
        return html, nothing

    html, nothing = async_to_sync(go)()
    assert 'id="live-state"' in html and 'hx-swap-oob="true"' in html
    assert "4321" in html and "60000.05" in html and "running" in html
    assert nothing is True


@pytest.mark.django_db(transaction=True)
def test_a_websocket_from_a_foreign_origin_is_refused(operator):
    cookie = _cookie_for(operator)

    async def go():
        comm = WebsocketCommunicator(
            application, "/ws/sessions/1/", headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)]
        )
        connected, _ = await comm.connect()
        await comm.disconnect()
        return connected

    assert async_to_sync(go)() is False
