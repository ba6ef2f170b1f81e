"""The Channels layer survives event loops that come and go (each ``async_to_sync`` call runs its own)."""

from __future__ import annotations

import asyncio
import contextlib

from asgiref.sync import async_to_sync
from django.conf import settings

from mmweb.layers import RedisChannelLayer


def new_layer() -> RedisChannelLayer:
    config = dict(settings.CHANNEL_LAYERS["default"]["CONFIG"])
    return RedisChannelLayer(**config)


def run_in_new_loop(coro_fn):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


def test_locks_left_held_by_a_closed_loop_do_not_break_receives_in_the_next_loop():
    """The state a CI run met: a channel's cleanup lock (and the receive lock) held by tasks of a loop that an
    ``async_to_sync`` call had closed; the next consumer's receive failed with "bound to a different event loop"."""
    layer = new_layer()
    stranded = async_to_sync(layer.new_channel)()
    key = layer.prefix + layer.non_local_name(stranded)

    async def strand() -> None:
        with contextlib.suppress(TimeoutError):  # a consumer of this loop has received from the layer
            await asyncio.wait_for(layer.receive(stranded), timeout=0.05)
        await layer.receive_clean_locks.acquire(key)
        waiter = asyncio.ensure_future(layer.receive_clean_locks.acquire(key))  # a waiter binds the lock to this loop
        await asyncio.sleep(0.05)
        assert not waiter.done()

    run_in_new_loop(strand)
    assert layer.receive_clean_locks.locked(key)  # held by a loop that no longer exists

    async def send_and_receive() -> dict:
        name = await layer.new_channel()
        await layer.send(name, {"type": "probe", "n": 7})
        return await asyncio.wait_for(layer.receive(name), timeout=10)

    assert run_in_new_loop(send_and_receive) == {"type": "probe", "n": 7}
    assert async_to_sync(send_and_receive)() == {"type": "probe", "n": 7}
    assert layer.receive_count == 0


def test_a_consumer_cut_off_mid_receive_by_async_to_sync_does_not_break_the_next_call():
    layer = new_layer()

    async def strand() -> None:
        pending = asyncio.ensure_future(layer.receive(await layer.new_channel()))  # still waiting at the return
        await asyncio.sleep(0.3)
        assert not pending.done()

    async def send_and_receive() -> dict:
        name = await layer.new_channel()
        await layer.send(name, {"type": "probe", "n": 8})
        return await asyncio.wait_for(layer.receive(name), timeout=10)

    for _ in range(3):
        async_to_sync(strand)()
        assert async_to_sync(send_and_receive)() == {"type": "probe", "n": 8}


def test_a_loop_that_is_still_running_is_never_reset():
    layer = new_layer()

    async def two_receives_one_loop() -> list[dict]:
        a, b = await layer.new_channel(), await layer.new_channel()
        waiting = [asyncio.ensure_future(layer.receive(a)), asyncio.ensure_future(layer.receive(b))]
        await asyncio.sleep(0.1)
        await layer.send(b, {"type": "probe", "to": "b"})
        await layer.send(a, {"type": "probe", "to": "a"})
        return await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)

    assert run_in_new_loop(two_receives_one_loop) == [{"type": "probe", "to": "a"}, {"type": "probe", "to": "b"}]
