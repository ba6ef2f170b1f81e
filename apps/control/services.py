"""The single writer for operator state: session start, stop and the kill switch.

Each service validates, changes state in one transaction, writes an audit row, and broadcasts after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from apps.control import audit, lifecycle
from apps.control.audit import MAX_REASON_CHARS, ControlError, check_reason
from apps.control.lifecycle import ACTIVE
from apps.control.models import GlobalKillSwitch
from apps.marketdata.models import Instrument
from apps.trading import lease
from apps.trading.models import TradingSession

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_REASON_CHARS",
    "Actor",
    "ControlError",
    "check_reason",
    "create_live_data_session",
    "create_live_session",
    "create_paper_session",
    "create_replay_session",
    "halt_all",
    "halt_session",
    "pause_session",
    "rearm_all",
    "rearm_session",
    "reduce_all",
    "reduce_session",
    "resume_session",
    "start_session",
    "stop_session",
]


@dataclass(frozen=True)
class Actor:
    label: str
    user: AbstractBaseUser | None = None

    @classmethod
    def of(cls, user: AbstractBaseUser) -> Actor:
        return cls(label=user.get_username(), user=user)


def _audit(actor: Actor, action: str, session: TradingSession | None, reason: str, **detail: Any) -> None:
    audit.record(actor.label, actor.user, action, session, reason, **detail)


def create_paper_session(
    actor: Actor, *, name: str, params: dict[str, Any] | None = None, seed: int = 0, start: bool = True
) -> TradingSession:
    """Create a paper session on the built-in simulator and (optionally) queue its quoting loop."""
    from apps.trading.runtime import build_session_config

    config = build_session_config(params or {}, seed)  # raises ValueError naming the bad parameter
    with transaction.atomic():
        instrument, _ = Instrument.objects.get_or_create(
            venue="sim",
            symbol=f"SIM-BTCUSDT-{seed}",
            defaults={"kind": Instrument.Kind.PERP, "tick_size": config.sim.tick_size, "lot_size": config.sim.lot_size},
        )
        return _open_session(actor, name, instrument, params or {}, seed, "simulator", start)


def create_replay_session(
    actor: Actor,
    *,
    name: str,
    instrument: str,
    replay: dict[str, Any],
    params: dict[str, Any] | None = None,
    seed: int = 0,
    start: bool = True,
) -> TradingSession:
    """Create a paper session that replays recorded market data of a known instrument through the live quoting
    loop (re-stamped to start now, played at real speed), and (optionally) queue its loop.

    ``instrument`` is a registry key (``binance-usdm:BTCUSDT``, see :mod:`apps.marketdata.instruments`); the
    session trades on its tick and lot and, unless ``params.venue`` says otherwise, pays its fees. ``replay`` is
    ``{"files": [paths], "format": F[, "max_events": N]}`` (a recording; its records must name this instrument
    when they name one) or ``{"stored": True}`` (every tick stored for the instrument). Every bad value raises
    ValueError naming it, and nothing is created.
    """
    from apps.marketdata import instruments
    from apps.trading.runtime import build_session_config

    known = instruments.get(instrument)  # ValueError naming the known ones
    params = dict(params or {})
    if "replay" in params:
        raise ValueError("params.replay: the data source is given as replay=..., not inside params")
    if not isinstance(replay, dict):
        raise ValueError(f"replay must be an object, got {type(replay).__name__}")
    params = instruments.with_instrument_defaults(params, known, grid=False)  # the loop uses the row's grid
    with transaction.atomic():
        inst = instruments.ensure_known_instrument(known)
        params["replay"] = _replay_source(replay, known, inst)
        build_session_config(params, seed)  # raises ValueError naming the bad parameter
        return _open_session(actor, name, inst, params, seed, "replay", start, instrument=known.key)


def create_live_data_session(
    actor: Actor,
    *,
    name: str,
    instrument: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    start: bool = True,
) -> TradingSession:
    """Create a paper session on live market data (paper trading on a live market) and (optionally) queue its loop.

    ``instrument`` is a registry key of a Binance instrument (``binance-usdm:BTCUSDT``, ``binance-spot:ETHUSDT``,
    see :mod:`apps.marketdata.instruments`); the loop's feed is a Binance connector for it (``params.feed.source``
    = ``"binance"``, URLs from the MM_BINANCE_* settings) and its venue the paper venue on the instrument's tick and
    lot, paying its fees unless ``params.venue`` says otherwise. Every market event is recorded. Every bad value
    raises ValueError naming it, and nothing is created.
    """
    from apps.marketdata import instruments
    from apps.trading.runtime import BINANCE_VENUES, build_session_config

    known = instruments.get(instrument)  # ValueError naming the known ones
    if known.venue not in BINANCE_VENUES:
        raise ValueError(f"instrument: live data comes from Binance ({', '.join(BINANCE_VENUES)}), not {known.key}")
    params = dict(params or {})
    if "replay" in params:
        raise ValueError("params.replay: a live-data session's market is the venue's stream, not a recording")
    feed = params.get("feed", {})
    if not isinstance(feed, dict):
        raise ValueError(f"params.feed must be an object, got {type(feed).__name__}")
    if feed.get("source", "binance") != "binance":
        raise ValueError(f"params.feed.source: a live-data session's feed is 'binance', got {feed['source']!r}")
    params["feed"] = {**feed, "source": "binance"}
    params = instruments.with_instrument_defaults(params, known, grid=False)  # the loop uses the row's grid
    build_session_config(params, seed)  # raises ValueError naming the bad parameter
    with transaction.atomic():
        inst = instruments.ensure_known_instrument(known)
        return _open_session(actor, name, inst, params, seed, "binance", start, instrument=known.key)


def create_live_session(
    actor: Actor,
    *,
    name: str,
    instrument: str = "hyperliquid:BTC",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    start: bool = True,
) -> TradingSession:
    """Create a LIVE session: real orders on Hyperliquid perps, and (optionally) queue its loop.

    ``instrument`` is a registry key of a Hyperliquid perp (``hyperliquid:BTC``); its symbol is the coin. The
    loop's feed and venue are one :class:`~apps.venues.hyperliquid.venue.HyperliquidVenue` (``params.feed.source``
    = ``"hyperliquid"``): network and URLs from the MM_HYPERLIQUID_* settings, the key from the environment
    (never from ``params``, never stored). The caller decides who may do this (an admin only, in any view).
    Every bad value raises ValueError naming it, and nothing is created.
    """
    from apps.marketdata import instruments
    from apps.trading.runtime import build_session_config

    known = instruments.get(instrument)  # ValueError naming the known ones
    if known.venue != "hyperliquid":
        raise ValueError(f"instrument: live trading is implemented for Hyperliquid perps only, not {known.key}")
    params = dict(params or {})
    if "replay" in params:
        raise ValueError("params.replay: a live session's market is the venue's stream, not a recording")
    feed = params.get("feed", {})
    if not isinstance(feed, dict):
        raise ValueError(f"params.feed must be an object, got {type(feed).__name__}")
    if feed.get("source", "hyperliquid") != "hyperliquid":
        raise ValueError(
            f"params.feed.source: a live Hyperliquid session's feed is 'hyperliquid', got {feed['source']!r}"
        )
    params["feed"] = {**feed, "source": "hyperliquid"}
    params = instruments.with_instrument_defaults(params, known, grid=False)
    build_session_config(params, seed)  # raises ValueError naming the bad parameter
    with transaction.atomic():
        inst = instruments.ensure_known_instrument(known)
        mode = TradingSession.Mode.LIVE
        return _open_session(actor, name, inst, params, seed, "hyperliquid", start, mode=mode, instrument=known.key)


def _open_session(
    actor: Actor,
    name: str,
    instrument: Instrument,
    params: dict[str, Any],
    seed: int,
    feed: str,
    start: bool,
    /,
    mode: str = TradingSession.Mode.PAPER,
    **detail: Any,
) -> TradingSession:
    """The part every session's creation shares (inside the caller's transaction): the row, its audit row,
    parameter version 1 and, if asked, its quoting loop queued after commit."""
    from apps.control.params import record_initial

    session = TradingSession.objects.create(
        name=name, instrument=instrument, params=params, seed=seed, mode=mode, feed=feed
    )
    _audit(actor, "session.create", session, "", params=params, seed=seed, start=start, mode=mode, **detail)
    record_initial(actor, session)  # parameter version 1
    if start:
        _queue_loop(session)
    return session


def _replay_source(replay: dict[str, Any], known: Any, inst: Instrument) -> dict[str, Any]:
    """``params.replay`` for the loop: a recording checked against the instrument, or the stored range resolved."""
    from pathlib import Path

    from apps.marketdata.identify import identify
    from apps.marketdata.selectors import stored_range_ns

    if replay.get("stored"):
        if set(replay) - {"stored", "max_events"}:
            raise ValueError(f"replay: a stored replay takes only 'stored' and 'max_events', got {sorted(replay)}")
        bounds = stored_range_ns(inst.pk)
        if bounds is None:
            raise ValueError(
                f"replay: no market data stored for {known.key}; import some with "
                f"`python manage.py import_marketdata FILES --format F` first"
            )
        out: dict[str, Any] = {"instrument_id": inst.pk, "start_ns": bounds[0], "end_ns": bounds[1]}
    else:
        files, fmt = replay.get("files"), replay.get("format")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise ValueError("replay.files must be a non-empty list of paths")
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise ValueError(f"replay.files: not found: {', '.join(missing)}")
        found = identify(files, fmt) if isinstance(fmt, str) else None
        if found is not None and (found.venue, found.symbol) != (known.venue, known.symbol):
            raise ValueError(f"replay.files hold {found.label()} ({found.evidence}), not {known.key}")
        out = {"files": list(files), "format": fmt}
    if "max_events" in replay:
        n = replay["max_events"]
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"replay.max_events must be a positive integer, got {n!r}")
        out["max_events"] = n
    return out


def _queue_loop(session: TradingSession) -> None:
    from apps.trading.tasks import run_quoting_session

    session_id = session.pk

    def enqueue() -> None:
        try:
            run_quoting_session.delay(session_id)
        except Exception as exc:  # noqa: BLE001 - broker down: the dead-man's sweep queues it again
            logger.warning("session %s: could not queue the quoting loop (%s); the sweep will retry", session_id, exc)

    transaction.on_commit(enqueue)


def _transition(actor: Actor, session_id: int, event: str, reason: str, **kwargs: Any) -> TradingSession:
    """An operator's event through the lifecycle table (status, audit row, database cancels, broadcast)."""
    try:
        return lifecycle.transition(
            session_id, event, reason=reason, actor_label=actor.label, actor_user=actor.user, **kwargs
        )
    except TradingSession.DoesNotExist:
        raise ControlError(f"no session #{session_id}") from None


def halt_session(actor: Actor, session_id: int, reason: str) -> TradingSession:
    """Kill switch: latch HALTED. The loop cancels every open order at its next step (within one loop interval)
    and sends nothing until an operator re-arms; with no live loop the orders are cancelled here."""
    return _transition(actor, session_id, "halt", reason)


def reduce_session(actor: Actor, session_id: int, reason: str) -> TradingSession:
    """REDUCING: only orders that reduce |inventory| may be sent; resting orders that would grow it are cancelled."""
    return _transition(actor, session_id, "reduce", reason)


def pause_session(actor: Actor, session_id: int, reason: str = "operator pause") -> TradingSession:
    """Cancel quotes, keep the position and keep watching the market."""
    return _transition(actor, session_id, "pause", reason)


def resume_session(actor: Actor, session_id: int, reason: str = "operator resume") -> TradingSession:
    session = _transition(actor, session_id, "resume", reason)
    _ensure_loop(session)
    return session


def rearm_session(actor: Actor, session_id: int, reason: str) -> TradingSession:
    """Only an operator (a logged-in user) can re-arm a HALTED session, with a reason. It comes back PAUSED:
    quoting starts again only on an explicit resume."""
    if actor.user is None:
        raise ControlError("only an operator can re-arm a halted session")
    session = _transition(actor, session_id, "rearm", reason)
    _ensure_loop(session)
    return session


def stop_session(
    actor: Actor,
    session_id: int,
    reason: str = "operator stop",
    *,
    flatten: bool = False,
    max_slippage_bps: float = 10.0,
) -> TradingSession:
    """Stop: the loop cancels all orders and exits. With ``flatten`` it first sends marketable IOC orders to close
    the position, priced no worse than ``max_slippage_bps`` from the touch."""
    if flatten and not (0 < max_slippage_bps <= 500):
        raise ControlError(f"max_slippage_bps must be in (0, 500], got {max_slippage_bps}")
    if flatten and TradingSession.objects.filter(pk=session_id, status=TradingSession.Status.HALTED).exists():
        raise ControlError("a HALTED session sends no order, flattening included; re-arm it first")
    if flatten and GlobalKillSwitch.current().state == GlobalKillSwitch.State.HALTED:
        raise ControlError("the global kill switch is HALTED: no order is sent, flattening included; re-arm it first")
    fields = {"flatten_requested": flatten, "flatten_max_slippage_bps": max_slippage_bps if flatten else None}
    return _transition(
        actor, session_id, "stop", reason, extra_fields=fields, flatten=flatten, max_slippage_bps=max_slippage_bps
    )


def start_session(actor: Actor, session_id: int) -> TradingSession:
    """Queue the quoting loop of a CREATED session (or one whose loop died while RUNNING)."""
    with transaction.atomic():
        session = TradingSession.objects.select_for_update().get(pk=session_id)
        if session.status not in (TradingSession.Status.CREATED, TradingSession.Status.RUNNING):
            raise ControlError(f"session #{session_id} is {session.status}; only created sessions can be started")
        _audit(actor, "session.start", session, "")
        _queue_loop(session)
    return session


def _ensure_loop(session: TradingSession) -> None:
    if not lease.is_live(session):
        _queue_loop(session)


def halt_all(actor: Actor, reason: str) -> GlobalKillSwitch:
    """Global kill switch: every session stops sending orders and cancels what it has, until an operator re-arms."""
    return _set_global(actor, GlobalKillSwitch.State.HALTED, reason)


def reduce_all(actor: Actor, reason: str) -> GlobalKillSwitch:
    return _set_global(actor, GlobalKillSwitch.State.REDUCING, reason)


def rearm_all(actor: Actor, reason: str) -> GlobalKillSwitch:
    if actor.user is None:
        raise ControlError("only an operator can re-arm the global kill switch")
    return _set_global(actor, GlobalKillSwitch.State.ARMED, reason)


def _set_global(actor: Actor, state: str, reason: str) -> GlobalKillSwitch:
    check_reason(reason, required=True, what="the global kill switch")
    with transaction.atomic():
        switch, _ = GlobalKillSwitch.objects.select_for_update().get_or_create(singleton=True)
        previous = switch.state
        switch.state, switch.reason, switch.changed_by = state, reason, actor.label
        switch.save()
        _audit(actor, f"global.{state}", None, reason, previous=previous)
        governed = TradingSession.objects.filter(status__in=ACTIVE).exclude(mode=TradingSession.Mode.BACKTEST)
        if state == GlobalKillSwitch.State.HALTED:
            for s in governed:
                if not lease.is_live(s):
                    audit.cancel_open_orders_in_db(s.pk)  # no loop holds it: nothing rests at any venue
        paused: set[int] = set()
        if state != GlobalKillSwitch.State.HALTED and previous == GlobalKillSwitch.State.HALTED:
            paused = _pause_after_global_halt(actor, reason)  # each pause is broadcast by its own transition
        for s in governed:
            if s.pk not in paused:
                audit.broadcast_status(s)  # after commit, with the new effective status
    return switch


def _pause_after_global_halt(actor: Actor, reason: str) -> set[int]:
    """Leaving a global halt is a re-arm of every session it halted, and a re-arm comes back PAUSED: each
    session that was running or reducing is paused (with its own audit row) in the same transaction as the switch,
    so no loop sees the switch open while its session still says running. The operator resumes each one."""
    was_quoting = (TradingSession.Status.RUNNING, TradingSession.Status.REDUCING)
    sessions = (
        TradingSession.objects.filter(status__in=was_quoting)
        .exclude(mode=TradingSession.Mode.BACKTEST)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    why = f"global kill switch re-armed ({reason}); resume to quote again"
    ids = list(sessions)
    for session_id in ids:
        lifecycle.transition(
            session_id, "pause", reason=why, actor_label=actor.label, actor_user=actor.user, by="global.armed"
        )
    return set(ids)
