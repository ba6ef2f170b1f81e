"""The kill switch: a latched state machine and the cheap gate every order passes.

States, least to most restrictive
---------------------------------
``ARMED``     every order may be sent.
``REDUCING``  only orders that reduce ``|q|`` without flipping its sign (an inventory-reducing mode).
``HALTED``    no order at all; the owner cancels every open order when it enters this state.

Transitions
-----------
::

    ARMED ──reduce──▶ REDUCING ──halt──▶ HALTED
      └──────────────────halt──────────────▲
    HALTED / REDUCING ──rearm (operator + reason)──▶ ARMED      (or HALTED ──rearm──▶ REDUCING, to flatten)

* ``halt`` and ``reduce`` may come from any actor (operator click, system job such as the dead-man's switch,
  or an automatic rule), are idempotent (``None`` when nothing changes) and never *loosen*: ``reduce`` on a
  HALTED switch does nothing. They are never refused: an empty reason is recorded as ``"(no reason given)"``.
* Both REDUCING and HALTED **latch**: the only way back is :meth:`KillSwitch.rearm`, which requires an actor
  of kind ``operator`` and a non-empty reason, and raises :class:`RearmRefusedError` otherwise. A rule or a
  system job can never re-arm. ``rearm`` only loosens (to ARMED, or from HALTED to REDUCING so an operator
  can flatten with reduce-only orders).
* Every change returns a :class:`Transition` (scope, time, from, to, actor, reason) for the audit log.

Scopes
------
One switch per session plus one global switch; :class:`CombinedSwitch` applies the most restrictive.

Persistence
-----------
:meth:`KillSwitch.to_dict` / :meth:`KillSwitch.from_dict` round-trip the state (plain JSON types). No I/O here.

Cost
----
:meth:`KillSwitch.check_order` is a handful of comparisons and no allocation on the allowed path: about
0.5–0.7 µs per call in CPython 3.11 (best of 5), 1.1 µs for a :class:`CombinedSwitch` of two, a few µs on
a heavily loaded machine. The block message's prefix is built at transition time, not per check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "REDUCE_SIZE_REL_TOL",
    "STATE_SEVERITY",
    "Actor",
    "ActorKind",
    "CombinedSwitch",
    "KillSwitch",
    "RearmRefusedError",
    "SwitchState",
    "Transition",
    "gate",
]


class SwitchState(StrEnum):
    ARMED = "armed"
    REDUCING = "reducing"
    HALTED = "halted"


STATE_SEVERITY: dict[SwitchState, int] = {SwitchState.ARMED: 0, SwitchState.REDUCING: 1, SwitchState.HALTED: 2}

REDUCE_SIZE_REL_TOL = 1e-9
"""Relative slack on ``size <= |q|`` in REDUCING, so float noise in a position summed from fills
(0.1 + 0.2 = 0.30000000000000004) cannot block closing it exactly. 1e-9 of |q| can never flip a position
by a tradable amount."""

NO_REASON = "(no reason given)"


class ActorKind(StrEnum):
    OPERATOR = "operator"  # a human, authenticated by the caller
    SYSTEM = "system"  # a job or worker: dead-man's switch, buffer overflow guard, start-up check
    RULE = "rule"  # an automatic risk rule


class RearmRefusedError(PermissionError):
    """Re-arming needs a human operator and a non-empty reason."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who or what acted: ``kind`` and a non-empty ``name`` (user name, job name or rule name)."""

    kind: ActorKind
    name: str

    def __post_init__(self) -> None:
        try:
            kind = ActorKind(self.kind)
        except ValueError:
            allowed = ", ".join(k.value for k in ActorKind)
            raise ValueError(f"kind must be one of {allowed}, got {self.kind!r}") from None
        object.__setattr__(self, "kind", kind)
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")

    @classmethod
    def operator(cls, name: str) -> Actor:
        return cls(ActorKind.OPERATOR, name)

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(ActorKind.SYSTEM, name)

    @classmethod
    def rule(cls, name: str) -> Actor:
        return cls(ActorKind.RULE, name)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "name": self.name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Actor:
        return cls(data["kind"], data["name"])

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, as written to the audit log. ``ts_ns`` is int ns since the epoch (caller's clock)."""

    scope: str
    ts_ns: int
    from_state: SwitchState
    to_state: SwitchState
    actor: Actor
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "ts_ns": self.ts_ns,
            "from_state": self.from_state.value,
            "to_state": self.to_state.value,
            "actor": self.actor.to_dict(),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        return cls(
            scope=str(data["scope"]),
            ts_ns=_as_int("ts_ns", data["ts_ns"]),
            from_state=_as_state("from_state", data["from_state"]),
            to_state=_as_state("to_state", data["to_state"]),
            actor=Actor.from_dict(data["actor"]),
            reason=str(data["reason"]),
        )


def _as_state(name: str, value: object) -> SwitchState:
    try:
        return SwitchState(value)
    except ValueError:
        allowed = ", ".join(s.value for s in SwitchState)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return value


def gate(state: SwitchState, side: int, size: float, position: float) -> str | None:
    """``None`` if an order of ``side`` (+1 buy / −1 sell) and ``size`` (base units, > 0) may be sent given
    the current ``position`` q (base units), else why not. The rules of the module docstring; fail closed on
    a malformed order (bad side, non-positive or non-finite size, non-finite position in REDUCING).

    In REDUCING, pass as ``position`` the *projected* position if every already-open order on this side
    filled (e.g. ``q − Σ open sells`` for a long), so several reduce-only orders cannot flip it together.
    """
    if state is SwitchState.HALTED:
        return "halted"
    if side != 1 and side != -1:
        return f"invalid side {side!r}"
    try:
        if not (size > 0 and size != math.inf):  # NaN fails the first comparison
            return f"invalid size {size!r}"
        if state is SwitchState.ARMED:
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


class KillSwitch:
    """A latched ARMED / REDUCING / HALTED switch for one scope (``"global"`` or e.g. ``"session:42"``).

    Not thread-safe for writers (one writer: the service layer); readers see a consistent state because each
    transition replaces the state reference last.
    """

    __slots__ = ("_block", "_last", "_since_ns", "_state", "scope")

    def __init__(
        self,
        scope: str = "global",
        state: SwitchState = SwitchState.ARMED,
        since_ns: int = 0,
        last_transition: Transition | None = None,
    ) -> None:
        if not isinstance(scope, str) or not scope:
            raise ValueError(f"scope must be a non-empty string, got {scope!r}")
        self.scope = scope
        self._since_ns = since_ns
        self._last = last_transition
        self._set(_as_state("state", state))

    # --- reads -----------------------------------------------------------------------------------

    @property
    def state(self) -> SwitchState:
        return self._state

    @property
    def since_ns(self) -> int:
        """When the current state was entered (ns since the epoch; 0 = never changed)."""
        return self._since_ns

    @property
    def last_transition(self) -> Transition | None:
        return self._last

    @property
    def reason(self) -> str:
        """Why the switch is in its state ('' for a switch that never changed)."""
        return self._last.reason if self._last is not None else ""

    def check_order(self, side: int, size: float, position: float) -> str | None:
        """``None`` to allow the order, else a reason naming this scope (see :func:`gate`)."""
        why = gate(self._state, side, size, position)
        if why is None:
            return None
        return f"{self._block}: {why}"

    def allowed_sides(self, position: float) -> tuple[int, ...]:
        """Sides (+1 buy, −1 sell) the quoter may quote at all: both, the reducing one, or none."""
        if self._state is SwitchState.ARMED:
            return (1, -1)
        if self._state is SwitchState.HALTED or not math.isfinite(position) or position == 0:
            return ()
        return (-1,) if position > 0 else (1,)

    # --- transitions ------------------------------------------------------------------------------

    def halt(self, actor: Actor, reason: str, ts_ns: int) -> Transition | None:
        """Enter HALTED from anywhere; ``None`` if already HALTED. Never refused."""
        return self._tighten(SwitchState.HALTED, actor, reason, ts_ns)

    def reduce(self, actor: Actor, reason: str, ts_ns: int) -> Transition | None:
        """ARMED → REDUCING; ``None`` when already REDUCING or HALTED (never loosens). Never refused."""
        return self._tighten(SwitchState.REDUCING, actor, reason, ts_ns)

    def rearm(
        self, actor: Actor, reason: str, ts_ns: int, to_state: SwitchState = SwitchState.ARMED
    ) -> Transition | None:
        """Loosen the latch: to ARMED, or HALTED → REDUCING. Operators only, with a reason.

        Raises
        ------
        RearmRefusedError
            ``actor`` is not an :class:`Actor` of kind ``operator``, or ``reason`` is empty / blank.
        ValueError
            ``to_state`` is HALTED or more restrictive than the current state (use :meth:`halt` /
            :meth:`reduce` to tighten).

        Returns ``None`` when the switch is already in ``to_state``.
        """
        if not isinstance(actor, Actor) or actor.kind is not ActorKind.OPERATOR:
            raise RearmRefusedError(f"{self.scope}: only an operator can re-arm, not {actor}")
        if not isinstance(reason, str) or not reason.strip():
            raise RearmRefusedError(f"{self.scope}: re-arming needs a reason, got {reason!r}")
        target = _as_state("to_state", to_state)
        if target is SwitchState.HALTED or STATE_SEVERITY[target] > STATE_SEVERITY[self._state]:
            raise ValueError(f"rearm only loosens: cannot go from {self._state.value} to {target.value}")
        if target is self._state:
            return None
        return self._move(target, actor, reason.strip(), ts_ns)

    def on_rule_trip(self, rule: str, action: str, message: str, ts_ns: int) -> Transition | None:
        """Apply an automatic rule's action: ``"halt"`` → :meth:`halt`, ``"reduce"`` → :meth:`reduce`,
        anything else (``"warn"``, ``"pull_quotes"``) does not touch the switch and returns ``None``."""
        if action == "halt":
            return self.halt(Actor.rule(rule), message, ts_ns)
        if action == "reduce":
            return self.reduce(Actor.rule(rule), message, ts_ns)
        return None

    def _tighten(self, target: SwitchState, actor: Actor, reason: str, ts_ns: int) -> Transition | None:
        if STATE_SEVERITY[target] <= STATE_SEVERITY[self._state]:
            return None
        text = reason.strip() if isinstance(reason, str) and reason.strip() else NO_REASON
        return self._move(target, actor, text, ts_ns)

    def _move(self, target: SwitchState, actor: Actor, reason: str, ts_ns: int) -> Transition:
        t = Transition(self.scope, ts_ns, self._state, target, actor, reason)
        self._last = t
        self._since_ns = ts_ns
        self._set(target)
        return t

    def _set(self, state: SwitchState) -> None:
        # The block prefix is prepared here so check_order formats nothing on the hot path's common cases.
        why = f" by {self._last.actor}: {self._last.reason}" if self._last is not None else ""
        self._block = f"kill switch {self.scope} {state.value}{why}"
        self._state = state

    # --- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "scope": self.scope,
            "state": self._state.value,
            "since_ns": self._since_ns,
            "last_transition": self._last.to_dict() if self._last is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KillSwitch:
        """Rebuild from :meth:`to_dict`. Raises ``ValueError``/``KeyError`` on anything malformed; the caller
        should then treat the scope as HALTED rather than guess."""
        if data.get("version") != 1:
            raise ValueError(f"version must be 1, got {data.get('version')!r}")
        last = data.get("last_transition")
        transition = Transition.from_dict(last) if last is not None else None
        state = _as_state("state", data["state"])
        if transition is not None and transition.to_state is not state:
            raise ValueError(
                f"state {state.value!r} disagrees with last_transition.to_state {transition.to_state.value!r}"
            )
        return cls(
            scope=str(data["scope"]),
            state=state,
            since_ns=_as_int("since_ns", data["since_ns"]),
            last_transition=transition,
        )

    def __repr__(self) -> str:
        return f"KillSwitch(scope={self.scope!r}, state={self._state.value!r}, since_ns={self._since_ns})"


class CombinedSwitch:
    """Several switches (typically global + session) acting as one: the most restrictive state wins.

    The allowed order sets are nested (HALTED ⊂ REDUCING ⊂ ARMED), so an order passes iff every switch
    passes it; switches are checked most restrictive first, so the reason given is the strongest one.
    """

    __slots__ = ("switches",)

    def __init__(self, *switches: KillSwitch) -> None:
        if not switches:
            raise ValueError("switches must not be empty")
        self.switches = switches

    @property
    def state(self) -> SwitchState:
        return max((s.state for s in self.switches), key=STATE_SEVERITY.__getitem__)

    def check_order(self, side: int, size: float, position: float) -> str | None:
        first: str | None = None
        first_sev = -1
        for s in self.switches:
            why = s.check_order(side, size, position)
            if why is not None:
                sev = STATE_SEVERITY[s.state]
                if sev > first_sev:
                    first, first_sev = why, sev
        return first

    def allowed_sides(self, position: float) -> tuple[int, ...]:
        sides: tuple[int, ...] = (1, -1)
        for s in self.switches:
            mine = s.allowed_sides(position)
            sides = tuple(x for x in sides if x in mine)
        return sides
