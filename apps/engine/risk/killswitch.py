"""The one vocabulary for "may we trade", and the cheap gate every order passes.

Modes, least to most restrictive (:class:`Mode`, ordered: the larger wins when two sources disagree)
--------------------------------------------------------------------------------------------------
``RUNNING``   every order may be sent.
``REDUCING``  only orders that reduce ``|q|`` without flipping its sign (an inventory-reducing mode).
``PAUSED``    no new order; open orders are cancelled; the market is still watched (quoting resumes on its own
              when the cause clears: an operator's pause, a stale feed, a risk rule that pulls quotes).
``HALTED``    no order at all until an operator re-arms; every open order is cancelled.

Every other word for the same thing is mapped here, once: a session's status and the global switch's state
(:meth:`Mode.of`), a risk rule's action (:meth:`Mode.of_rule`).

Who may move a session or the global switch between these states, the latch, the audit row and the
broadcast belong to the control services (``apps.control``); the order gateway (:mod:`apps.engine.risk.gateway`)
calls :func:`gate` for the reduce-only rule. An in-engine latched switch object (``KillSwitch``,
``CombinedSwitch`` and its ``Actor``) used to live here, reached only by its tests; it was removed in issue 14.

Cost
----
:func:`gate` is a handful of comparisons and no allocation on the allowed path (well under 1 µs per call in
CPython 3.11).
"""

from __future__ import annotations

import math
from enum import IntEnum

__all__ = ["REDUCE_SIZE_REL_TOL", "Mode", "gate"]


class Mode(IntEnum):
    """Ordered by restrictiveness: the larger value wins when two sources disagree."""

    RUNNING = 0
    REDUCING = 1
    PAUSED = 2
    HALTED = 3

    @classmethod
    def of(cls, status: str) -> Mode:
        """A session's status (``TradingSession.Status``) or the global switch's state (``armed``…); a session
        that is ``created`` trades as running once its loop runs it. Anything unknown is HALTED (fail closed).

        >>> [Mode.of("armed"), Mode.of("reducing"), Mode.of("stopped")]
        [<Mode.RUNNING: 0>, <Mode.REDUCING: 1>, <Mode.HALTED: 3>]
        """
        return _STATUS.get(status, cls.HALTED)

    @classmethod
    def of_rule(cls, action: str) -> Mode:
        """A risk rule's action (``RuleAction``): ``warn`` trades on, ``pull_quotes`` pauses, ``reduce`` and
        ``halt`` latch. Anything unknown is HALTED."""
        return _RULE.get(action, cls.HALTED)


_STATUS = {
    "created": Mode.RUNNING,
    "running": Mode.RUNNING,
    "armed": Mode.RUNNING,
    "reducing": Mode.REDUCING,
    "paused": Mode.PAUSED,
    "halted": Mode.HALTED,
}
_RULE = {"warn": Mode.RUNNING, "pull_quotes": Mode.PAUSED, "reduce": Mode.REDUCING, "halt": Mode.HALTED}


REDUCE_SIZE_REL_TOL = 1e-9
"""Relative slack on ``size <= |q|`` in REDUCING, so float noise in a position summed from fills
(0.1 + 0.2 = 0.30000000000000004) cannot block closing it exactly. 1e-9 of |q| can never flip a position
by a tradable amount."""


def gate(state: Mode, side: int, size: float, position: float) -> str | None:
    """``None`` if an order of ``side`` (+1 buy / −1 sell) and ``size`` (base units, > 0) may be sent given
    the current ``position`` q (base units), else why not. The rules of the module docstring; fail closed on
    a malformed order (bad side, non-positive or non-finite size, non-finite position in REDUCING).

    In REDUCING, pass as ``position`` the *projected* position if every already-open order on this side
    filled (e.g. ``q − Σ open sells`` for a long), so several reduce-only orders cannot flip it together.
    """
    if state is Mode.HALTED or state is Mode.PAUSED:
        return state.name.lower()
    if side != 1 and side != -1:
        return f"invalid side {side!r}"
    try:
        if not (size > 0 and size != math.inf):  # NaN fails the first comparison
            return f"invalid size {size!r}"
        if state is Mode.RUNNING:
            return None
        if not math.isfinite(position):
            return f"reduce-only: position unknown ({position!r})"
    except TypeError:  # a non-number where a number belongs: refuse, never raise out of the gate
        return f"invalid size {size!r} or position {position!r}"
    if position == 0:
        return "reduce-only: position is flat"
    if (position > 0) == (side > 0):
        return f"reduce-only: a {'buy' if side > 0 else 'sell'} would increase |q| = {abs(position):g}"
    if size > abs(position) * (1.0 + REDUCE_SIZE_REL_TOL):
        return f"reduce-only: size {size:g} would flip the position {position:g}"
    return None
