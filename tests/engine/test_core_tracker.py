"""The compiled core's order-tracker steps (``apps/engine/_core.pyx``: an ack or a reject, and the actions it sends)
against the reference ``OrderTracker`` in apps/engine/execution/orders.py.

Two trackers get the same random stream: places (Side and int sides, float and int prices, known and odd time-in-force
values, reused ids), cancels (live, finished, pending, unknown orders), modifies and cancel-alls, and venue events
(acks open/cancelled/modified with and without price and size, rejects, acks and rejects for unknown and finished
orders, fills). One is driven through the twins (``_core.track_actions``/``track_event``), the other through its own
methods. After every step the two must hold the same orders (every field, in the same dict order), the same live
set, pending modifies, retired queue, counters and position, and return or raise the same.
"""

from __future__ import annotations

import random

import pytest

from apps.engine.core import CORE_COMPILED
from apps.engine.execution.orders import OrderTracker
from apps.engine.market.events import (
    CancelAll,
    CancelOrder,
    Fill,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    Side,
)

pytestmark = pytest.mark.skipif(not CORE_COMPILED, reason="the compiled strategy core is not selected")


def _state(tr: OrderTracker) -> tuple:
    orders = [(cid, o, o.status, o.resume_status, o.remaining) for cid, o in tr._orders.items()]
    return (
        orders,
        list(tr._live),
        dict(tr._pending_modify),
        list(tr._finished),
        tr.stats,
        tr.position,
        tr.cash,
        tr.fees_paid,
    )


def _outcome(f, *args):
    try:
        return ("ok", f(*args))
    except Exception as exc:  # noqa: BLE001 - the two must fail alike, whatever they raise
        return ("raised", type(exc).__name__, str(exc))


def _action(rng: random.Random, ids: list[str], n: list[int]):
    r = rng.random()
    if r < 0.45:
        if ids and rng.random() < 0.03:
            cid = rng.choice(ids)
        else:
            n[0] += 1
            cid = f"o{n[0]}"
            ids.append(cid)
        side = rng.choice([Side.BUY, Side.SELL, 1, -1]) if rng.random() < 0.2 else rng.choice([Side.BUY, Side.SELL])
        price = rng.choice([100.1, 99.9, 100, 101.25])
        tif = rng.choice(["GTC", "gtc", "IOC", "POST_ONLY", "post_only"]) if rng.random() < 0.3 else "GTC"
        return PlaceOrder(cid, side, price, rng.choice([0.01, 0.02, 1]), tif)
    if r < 0.8:
        return CancelOrder(rng.choice(ids) if ids and rng.random() < 0.9 else "unknown")
    if r < 0.92:
        return ModifyOrder(rng.choice(ids) if ids else "unknown", 100.2, 0.01)
    return CancelAll("test")


def _event(rng: random.Random, ids: list[str], t: int, n_fill: list[int]):
    cid = rng.choice(ids) if ids and rng.random() < 0.95 else "unknown"
    r = rng.random()
    if r < 0.35:
        return OrderAck(t, t, cid, "open", rng.choice([0.0, 100.1]), rng.choice([0.0, 0.01, 0.02]))
    if r < 0.6:
        return OrderAck(t, t, cid, "cancelled", 100.1, 0.01)
    if r < 0.68:
        return OrderAck(t, t, cid, "modified", rng.choice([0.0, 100.3]), rng.choice([0.0, 0.015]))
    if r < 0.72:
        return OrderAck(t, t, cid, "weird", 1.0, 1.0)
    if r < 0.88:
        return OrderReject(t, t, cid, "some_reason")
    n_fill[0] += 1
    fid = f"f{n_fill[0]}" if rng.random() < 0.9 else "f1"
    return Fill(t, t, cid, fid, rng.choice([Side.BUY, Side.SELL]), 100.1, 0.01, -0.0001, "maker", 0.0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("retain", [3, 10_000])
def test_the_tracker_twin_matches_the_reference_on_random_streams(seed, retain):
    from apps.engine import _core

    assert _core.reads_twinned(), "the twins stand down: test_core_reads names the reference that changed"
    rng = random.Random(seed)
    ref, twin = OrderTracker(retain_terminal=retain), OrderTracker(retain_terminal=retain)
    ids: list[str] = []
    n, n_fill = [0], [0]
    t = 1_000
    changed = 0
    for _ in range(1_500):
        t += 1
        if rng.random() < 0.5:
            actions = [_action(rng, ids, n) for _ in range(rng.randint(0, 3))]
            got = _outcome(_core.track_actions, twin, actions)
            want = _outcome(ref.on_actions, actions)
        else:
            ev = _event(rng, ids, t, n_fill)
            got = _outcome(_core.track_event, twin, ev)
            want = _outcome(ref.on_event, ev)
            changed += got == ("ok", True)
        assert got == want, (seed, t)
        assert _state(twin) == _state(ref), (seed, t)
    assert changed > 100  # acks and rejects that moved an order: the comparison saw the paths that matter
