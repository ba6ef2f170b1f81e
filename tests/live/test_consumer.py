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
        connected, _ = await comm.connect(timeout=20)
        assert connected
        await sync_to_async(publish_session_state)(sid, state, "running")
        first = await comm.receive_json_from(timeout=5)
        # a publish to another session's group must not reach this socket
        await sync_to_async(publish_session_state)(other, {**state, "kappa": 1.0}, "running")
        nothing = await comm.receive_nothing(timeout=0.5)
        await comm.disconnect()
        return first, nothing

    first, nothing = async_to_sync(go)()
    assert first["type"] == "snapshot" and first["seq"] >= 1
    snap = first["snapshot"]
    assert snap["status"] == "running" and snap["session_id"] == sid and snap["partial"] is True
    assert snap["state"]["kappa"] == 4321.0 and snap["state"]["mid"] == 60000.05
    assert nothing is True


@pytest.mark.django_db(transaction=True)
def test_a_slow_browser_gets_the_latest_snapshot_not_a_backlog_and_events_are_never_dropped(operator):
    """A browser that has not acknowledged MAX_IN_FLIGHT snapshots receives nothing more until it acks; meanwhile
    newer snapshots replace each other, and the ack brings the newest. Events pass regardless."""
    from apps.live.broadcast import publish_session_event, publisher
    from apps.live.consumers import MAX_IN_FLIGHT

    cookie = _cookie_for(operator)
    sid = create_paper_session(Actor(label="test"), name="slow", seed=1, start=False).pk

    def publish(n: int) -> None:
        publish_session_state(sid, {"mid": 100.0 + n, "fills": n}, "running")
        assert publisher.flush(5)

    async def go():
        comm = WebsocketCommunicator(application, f"/ws/sessions/{sid}/", headers=[ORIGIN, (b"cookie", cookie)])
        assert (await comm.connect(timeout=20))[0]
        got = []
        for n in range(MAX_IN_FLIGHT):
            await sync_to_async(publish)(n)
            got.append(await comm.receive_json_from(timeout=5))
        for n in range(MAX_IN_FLIGHT, MAX_IN_FLIGHT + 10):  # the browser is busy: nothing acked
            await sync_to_async(publish)(n)
        held = await comm.receive_nothing(timeout=0.5)
        await sync_to_async(publish_session_event)(sid, {"kind": "params", "ts_ns": 1, "version": 7, "changes": {}})
        event = await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"ack": got[-1]["seq"]})
        latest = await comm.receive_json_from(timeout=5)
        after = await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()
        return got, held, event, latest, after

    got, held, event, latest, after = async_to_sync(go)()
    assert [g["snapshot"]["state"]["fills"] for g in got] == list(range(MAX_IN_FLIGHT))
    assert held is True, "a slow browser was sent more than its window"
    assert event == {"type": "event", "event": {"kind": "params", "ts_ns": 1, "version": 7, "changes": {}}}
    assert latest["snapshot"]["state"]["fills"] == MAX_IN_FLIGHT + 9, "the ack must bring the newest snapshot"
    assert after is True, "the replaced snapshots must not follow"


@pytest.mark.django_db(transaction=True)
def test_an_audit_row_and_a_status_change_are_pushed_after_commit(operator):
    from apps.control.services import pause_session

    cookie = _cookie_for(operator)
    session = create_paper_session(Actor(label="test"), name="audit", seed=1, start=False)
    from apps.trading.models import TradingSession

    TradingSession.objects.filter(pk=session.pk).update(status="running")

    async def go():
        comm = WebsocketCommunicator(application, f"/ws/sessions/{session.pk}/", headers=[ORIGIN, (b"cookie", cookie)])
        assert (await comm.connect(timeout=20))[0]
        await sync_to_async(pause_session)(Actor.of(operator), session.pk, "lunch")
        got = [await comm.receive_json_from(timeout=5), await comm.receive_json_from(timeout=5)]
        await comm.disconnect()
        return got

    got = async_to_sync(go)()
    kinds = {m["event"]["kind"]: m["event"] for m in got}
    assert kinds["audit"]["action"] == "session.pause" and kinds["audit"]["reason"] == "lunch"
    assert kinds["audit"]["actor"] == operator.username
    assert kinds["status"]["status"] == "paused"


@pytest.mark.django_db(transaction=True)
def test_a_websocket_from_a_foreign_origin_is_refused(operator):
    cookie = _cookie_for(operator)

    async def go():
        comm = WebsocketCommunicator(
            application, "/ws/sessions/1/", headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)]
        )
        connected, _ = await comm.connect(timeout=20)
        await comm.disconnect()
        return connected

    assert async_to_sync(go)() is False


@pytest.mark.django_db(transaction=True)
def test_a_viewer_whose_role_comes_from_a_group_is_let_in_and_a_user_without_a_role_is_refused():
    """The role is read from the user's groups (a database query) during the handshake, off the event loop."""
    from tests.roles import make_user

    sid = create_paper_session(Actor(label="test"), name="roles", seed=1, start=False).pk

    async def connect(cookie: bytes):
        comm = WebsocketCommunicator(application, f"/ws/sessions/{sid}/", headers=[ORIGIN, (b"cookie", cookie)])
        result = await comm.connect(timeout=10)
        await comm.disconnect()
        return result

    viewer, nobody = _cookie_for(make_user("viewer")), _cookie_for(make_user("none"))
    assert async_to_sync(connect)(viewer)[0] is True
    assert async_to_sync(connect)(nobody) == (False, 4403)


def test_the_loop_never_waits_for_redis_and_snapshots_coalesce_while_it_is_away(settings):
    """The publisher's Redis here accepts connections and never answers (a hung server): each hand-over still
    returns at once, and the snapshots offered while the thread is stuck replace each other (latest wins)."""
    import socket
    import time

    from apps.live.broadcast import SnapshotPublisher

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # the kernel completes the handshake; nothing ever reads or answers
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "hung": {
            "BACKEND": "apps.live.layers.LivePubSubLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{hung.getsockname()[1]}/0"]},
        },
    }
    try:
        pub = SnapshotPublisher("hung")
        pub.offer(1, {"v": 1, "n": 0})
        time.sleep(0.5)  # the thread is now waiting on the hung server
        costs = []
        for n in range(1, 201):
            t0 = time.perf_counter()
            pub.offer(1, {"v": 1, "n": n})
            costs.append(time.perf_counter() - t0)
        assert max(costs) < 0.05, f"a hand-over took {max(costs) * 1e3:.1f} ms"
        assert pub.stats.sent == 0 and pub.stats.offered == 201
        assert pub.stats.replaced == 199, pub.stats  # one slot: each newer snapshot replaced the waiting one
        assert pub.flush(0.2) is False  # still stuck: nothing was sent, nothing queued up behind it
    finally:
        hung.close()
