"""The order gateway: the one path from the strategy to a venue, with the kill switch checked before every send.

The driver (:class:`apps.engine.simulation.backtest.EngineLoop`) sets the mode: the most restrictive of what
its owner hands it (a live session's status and the global switch, read from PostgreSQL by the quoting loop;
RUNNING in a backtest) and what the risk rules decide. The check itself is an in-memory comparison (a few
hundred nanoseconds). Blocked orders are answered with an ``OrderReject`` so the strategy's own order book stays
consistent. Pure: no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from apps.engine.execution.venue import Venue
from apps.engine.market.events import Action, CancelAll, CancelOrder, ModifyOrder, OrderEvent, OrderReject, PlaceOrder
from apps.engine.risk.killswitch import Mode, gate


class OrderGateway:
    def __init__(self, venue: Venue, mode: Mode = Mode.HALTED) -> None:
        self.venue = venue
        self.mode = mode  # starts closed: nothing is sent before the first control check
        self.blocked = 0

    def check(self, action: Action, position: float) -> str | None:
        """None when ``action`` may be sent in the current mode, else the reason it may not."""
        if isinstance(action, (CancelOrder, CancelAll)):
            return None  # cancelling is always allowed: it only ever reduces risk
        if self.mode is Mode.RUNNING:
            return None
        if self.mode is Mode.REDUCING and isinstance(action, PlaceOrder):
            # the engine's kill-switch gate owns the reduce-only rule
            reason = gate(Mode.REDUCING, int(action.side), action.size, position)
            return None if reason is None else f"session is REDUCING: {reason}"
        if isinstance(action, ModifyOrder) and self.mode is Mode.REDUCING:
            return "session is REDUCING: modifies are not sent"
        return f"session is {self.mode.name}: no new orders"

    def split(self, actions: Sequence[Action], position: float) -> tuple[list[Action], list[tuple[Action, str]]]:
        """(actions that may be sent, [(blocked action, reason)])."""
        allowed: list[Action] = []
        blocked: list[tuple[Action, str]] = []
        for a in actions:
            reason = self.check(a, position)
            if reason is None:
                allowed.append(a)
            else:
                blocked.append((a, reason))
        return allowed, blocked

    def submit(self, actions: Sequence[Action], now_ns: int, position: float) -> list[OrderEvent]:
        """Send what the mode allows; every blocked place/modify is answered with an ``OrderReject``."""
        allowed, blocked = self.split(actions, position)
        return self.send(allowed, blocked, now_ns)

    def send(self, allowed: list[Action], blocked: list[tuple[Action, str]], now_ns: int) -> list[OrderEvent]:
        out: list[OrderEvent] = self.venue.submit(allowed, now_ns) if allowed else []
        for a, reason in blocked:
            self.blocked += 1
            if isinstance(a, (PlaceOrder, ModifyOrder)):
                out.append(OrderReject(now_ns, now_ns, a.client_order_id, f"blocked by gateway: {reason}"))
        return out


__all__ = ["Mode", "OrderGateway"]  # Mode lives in killswitch, the vocabulary; re-exported for the driver
