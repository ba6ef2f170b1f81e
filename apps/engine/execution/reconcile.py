"""Order reconciliation: from the quotes a strategy wants on one side to the actions that make the venue hold them.

The one reconciler of the strategy core and the baselines. Per side, given target levels ``(price, size)``:

1. The side's *working* maker orders are its open post-only orders that are not already being cancelled. While
   one of them awaits its ack (``pending_new``) the side is left alone: acting on an order the venue has not
   confirmed risks duplicates.
2. Each target, best first, keeps the first free working order that does not need a requote
   (:func:`needs_requote`: within ``requote_ticks`` of the target).
3. Each unmatched target moves a free order (``ModifyOrder``, when ``modify_orders``) or places a new post-only
   order, if the worst case allows it: with every live order on this side filled, pending cancels included (a
   cancel can race a fill), ``|q|`` must stay within Q_max. Without this, a bid whose cancel is in flight and its
   replacement could both fill and take ``|q|`` past Q_max. A target that does not fit is skipped and counted
   (the guard binds; it is not silent).
4. The free working orders left over are cancelled.

The actions come in target order (new orders and modifies), then the cancels. Pure: the tracker is read, never
changed (the caller records the actions it sends).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from apps.engine.execution.orders import OrderStatus, OrderTracker
from apps.engine.market.events import Action, CancelOrder, ModifyOrder, PlaceOrder, Side

__all__ = ["REQUOTE_EPS_TICKS", "SideReconciliation", "needs_requote", "reconcile_side"]

_ROOM_SLACK = 1e-12  # base units: float noise in a position summed from fills must not block the last lot


REQUOTE_EPS_TICKS = 1e-8
"""Float slack of :func:`needs_requote`, in ticks: prices on the tick grid differ by whole ticks up to float
noise (≈1e-11 at 60,000 with a 0.1 tick), so a move of ``k`` ticks must count as ``k`` ticks, not ``k − ε``.
1e-8 tick is 1e-9 in price at a 0.1 tick, the absolute slack the core and the baselines used before."""


def needs_requote(
    working_px: float,
    target_px: float | None,
    tick_size: float,
    requote_ticks: int,
    *,
    eps_ticks: float = REQUOTE_EPS_TICKS,
) -> bool:
    """True when a working order at ``working_px`` should be replaced to reach ``target_px``.

    Replaced when the target moved by at least ``max(requote_ticks, 1)`` ticks (less ``eps_ticks`` of a tick of
    float slack), or when there is no target. The one requote rule of the strategy core and the baselines.

    >>> needs_requote(100.0, 100.3, 0.1, 3), needs_requote(100.0, 100.2, 0.1, 3)
    (True, False)
    """
    if target_px is None:
        return True
    return abs(working_px - target_px) >= (max(requote_ticks, 1) - eps_ticks) * tick_size


@dataclass(frozen=True, slots=True)
class SideReconciliation:
    """The actions for one side and how many targets the inventory guard skipped."""

    actions: list[Action]
    guard_skips: int = 0


def reconcile_side(
    tracker: OrderTracker,
    side: Side,
    targets: Sequence[tuple[float, float]],
    *,
    tick_size: float,
    requote_ticks: int,
    max_inventory: float,
    modify_orders: bool,
    new_order_id: Callable[[], str],
) -> SideReconciliation:
    """Actions that turn the venue's working orders on ``side`` into ``targets`` (see the module docstring).

    Parameters
    ----------
    targets : sequence of (price, size)
        The wanted levels, best first; prices on the tick grid, sizes in base units (> 0).
    max_inventory : float
        Q_max, base units, for the worst-case guard.
    new_order_id : callable
        Returns the client order id of the next new order.
    """
    working = [
        o
        for o in tracker.open_orders_on(side)
        if o.status is not OrderStatus.PENDING_CANCEL and o.tif.value == "POST_ONLY"
    ]
    if any(o.status is OrderStatus.PENDING_NEW for o in working):
        return SideReconciliation([])
    unmatched: list[tuple[float, float]] = []
    free = list(working)
    for price, size in targets:
        match = next((o for o in free if not needs_requote(o.price, price, tick_size, requote_ticks)), None)
        if match is not None:
            free.remove(match)
        else:
            unmatched.append((price, size))
    sign = 1.0 if side is Side.BUY else -1.0
    exposure = sign * tracker.position + sum(o.remaining for o in tracker.open_orders_on(side))
    room = max_inventory - exposure + _ROOM_SLACK
    actions: list[Action] = []
    skips = 0
    for price, size in unmatched:
        if modify_orders and free:
            actions.append(ModifyOrder(free.pop(0).client_order_id, price, size))
        elif size > room:
            skips += 1
        else:
            room -= size
            actions.append(PlaceOrder(new_order_id(), side, price, size, tif="POST_ONLY"))
    actions.extend(CancelOrder(o.client_order_id) for o in free)
    return SideReconciliation(actions, skips)
