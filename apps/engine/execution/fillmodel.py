"""Queue-aware fill model for simulated resting orders, driven by real trades and L2 depth.

Our paper orders are not in the recorded market, so the model tracks, for each one, the
displayed quantity **ahead** of it at its price level and decides when real market activity
would have reached it.

Model
-----
Symbols (base units unless stated): ``A`` queue ahead of our order, ``L`` displayed size at our
price level (others' orders only), ``B = L - A`` displayed size behind us, ``s`` a trade's size,
``c`` the part of a decrease of ``L`` not explained by trades (cancellations).

* **Joining.** An order arriving at a level joins at the back: ``A = L`` from the latest book seen.
  A price that improves the best on its side has ``L = 0``. When the level's size is unknown (BBO-only
  data, price behind the best), ``A`` stays unknown until the level is first observed, and is then set
  to the whole displayed size: we never assume we are further ahead than we can see.
* **Trades at our price** (aggressor on the other side) consume the queue in time priority:
  ``A ← max(0, A - s)`` and we fill ``min(remaining, max(0, s - A_before))``.
* **Trades through our price** (a sell printed below our bid, a buy above our ask): every displayed
  order at our price was consumed, so we fill ``min(remaining, s)`` at our own price.
* **Book crossing our price** (the best ask rests at or below our bid): the incoming seller would have
  met us first; we fill ``min(remaining, opposite size at or through our price)`` at our price.
* **Size decreases at our level** not explained by trades since the last observation are cancels
  ``c``, split by the queue model:

  - ``risk_averse``: every cancel comes from behind us; ``A`` only shrinks by trades and is capped at
    the displayed size, ``A ← min(A, L_new)``.
  - ``probabilistic``: a share ``w = A^p / (A^p + B^p)`` of ``c`` comes from ahead of us (``p`` =
    ``power``; ``p = 1`` means every displayed unit is equally likely to cancel), then the cap.

* **Size increases** are new orders joining behind us; ``A`` is unchanged.

Trade volume at our price is kept as a *credit* that explains later decreases of ``L`` (the trade and
the depth change that reflects it usually arrive as two events); the credit never exceeds ``L``.

Fills are always at our limit price (maker) — a price the market reached — and never exceed the
volume the market showed. No market impact: our simulated fills do not remove recorded liquidity.

**No partial fills** (the paper venue's ``partial_fills=False``, hftbacktest's ``NoPartialFillExchange``): the
rules above still decide *whether* the market reached our order; :func:`whole_fill` then fills its whole
remaining size (so the "never exceed the volume the market showed" bound is dropped in that mode). The queue
bookkeeping is unchanged.

This module is the readable reference (``PyLevelBook``, ``PyQueueState`` and the pure rules). ``LevelBook`` and
``QueueState`` below are the compiled twins from ``apps/engine/execution/_fillmodel.pyx`` (same API, the same
doubles on every shared recording) when they are built, and these references under ``MM_PURE_PYTHON=1``
(docs/compiled-core.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.engine import compiled
from apps.engine.market.events import OPPOSITE, Side
from apps.engine.validation import one_of, positive

QUEUE_MODELS = ("risk_averse", "probabilistic")


@dataclass(frozen=True)
class QueueModelParams:
    """Parameters of the cancel-attribution rule.

    Parameters
    ----------
    kind : str
        ``"risk_averse"`` (cancels always behind us) or ``"probabilistic"`` (power share).
    power : float
        Exponent ``p > 0`` of the probabilistic share ``A^p / (A^p + B^p)``; dimensionless. Ignored by
        ``risk_averse``.
    """

    kind: str = "risk_averse"
    power: float = 1.0

    def validate(self) -> None:
        # named by the venue configuration's fields, through which the operator sets them
        one_of("queue_model", self.kind, QUEUE_MODELS, "PaperVenueConfig")
        positive("queue_power", self.power, "PaperVenueConfig")


# --- pure rules ----------------------------------------------------------------------------------


def cancel_share_ahead(ahead: float, behind: float, power: float) -> float:
    """Fraction ``w`` of a cancelled quantity that was ahead of us: ``A^p / (A^p + B^p)``.

    Returns 0 when nothing is ahead and 1 when nothing is behind (and 0 when the level is empty).
    """
    if ahead <= 0.0:
        return 0.0
    if behind <= 0.0:
        return 1.0
    # ratio form avoids overflow of A^p for large p
    return 1.0 / (1.0 + (behind / ahead) ** power)


def queue_after_trade(ahead: float, remaining: float, volume: float) -> tuple[float, float]:
    """A trade of ``volume`` at our price: return ``(fill_size, new_ahead)``.

    The trade first consumes the queue ahead of us, then us, up to our remaining size.
    """
    fill = min(remaining, max(0.0, volume - ahead))
    return fill, max(0.0, ahead - volume)


def whole_fill(part: float, remaining: float) -> float:
    """The no-partial-fill rule: an order the market reached fills whole, else not at all.

    ``part`` is what the partial rules above (rounded down to whole lots) would fill now; ``remaining`` the
    order's open size. Returns ``remaining`` when ``part > 0``, else ``0.0`` (``NaN`` counts as not reached).
    """
    return remaining if part > 0.0 else 0.0


def queue_after_level_change(
    ahead: float,
    prev_size: float,
    new_size: float,
    trade_credit: float,
    params: QueueModelParams,
) -> tuple[float, float]:
    """Update the queue ahead after the displayed size at our level moved ``prev_size → new_size``.

    ``ahead`` has already been reduced by the trades whose volume is in ``trade_credit``.
    Returns ``(new_ahead, new_trade_credit)``.
    """
    credit = trade_credit
    if new_size < prev_size:
        decrease = prev_size - new_size
        explained = min(decrease, credit)
        credit -= explained
        cancelled = decrease - explained
        if cancelled > 0.0 and params.kind == "probabilistic":
            # the level before these cancels held prev_size minus what trades already took
            behind = max(0.0, prev_size - explained - ahead)
            ahead -= cancelled * cancel_share_ahead(ahead, behind, params.power)
    ahead = max(0.0, min(ahead, new_size))
    return ahead, min(credit, new_size)


# --- per-order queue state -----------------------------------------------------------------------


@dataclass
class PyQueueState:
    """Where one resting order stands in its level's queue: the pure-Python reference (the compiled twin is
    ``apps/engine/execution/_fillmodel.pyx``; use :data:`QueueState`, which is the compiled one when built).

    ``ahead`` is ``None`` while the level has never been observed since the order joined.
    ``priority`` orders our own orders at the same level (smaller joined earlier).
    """

    ahead: float | None
    level_size: float | None
    priority: int
    trade_credit: float = 0.0

    def observe_level(self, size: float, params: QueueModelParams) -> None:
        """A fresh displayed size ``size`` at our level."""
        if self.ahead is None:
            self.ahead = size  # first sight: join behind everything displayed now
        elif self.level_size is None:
            self.ahead = min(self.ahead, size)
        else:
            self.ahead, self.trade_credit = queue_after_level_change(
                self.ahead, self.level_size, size, self.trade_credit, params
            )
        self.level_size = size


# --- a minimal L2 book in integer ticks --------------------------------------------------------


class PyLevelBook:
    """Displayed size per price tick, fed by snapshots, diffs and best bid/ask updates: the pure-Python reference
    (the compiled twin is ``apps/engine/execution/_fillmodel.pyx``; use :data:`LevelBook`).

    Knows what it does not know: :meth:`level_size` returns ``None`` for a level it has no
    information about (e.g. behind the best when only BBO data is available). The best tick of
    each side is cached so that a 1,000-level book costs O(1) per typical update.
    """

    _SCAN_TICKS = 64  # after the best level disappears, look this far for the next one before a full scan

    def __init__(self, tick_size: float) -> None:
        self.tick_size = tick_size
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.has_depth = False  # True once an L2 snapshot was seen: missing levels then mean empty
        # deepest bid / ask tick the depth data has covered (missing levels above/below them are empty)
        self._bid_floor: int | None = None
        self._ask_ceiling: int | None = None
        # The cache: while ``_best_ok[side]``, ``_best[side]`` is the best tick. Once the best level is deleted,
        # ``_best[side]`` keeps that deleted tick as a bound: every level then present is strictly worse than it,
        # except a level added since, which is better than everything left and becomes the best again. A rescan
        # (``_find_best``) therefore only has to look from the bound towards the worse side.
        self._best: dict[Side, int | None] = {Side.BUY: None, Side.SELL: None}
        self._best_ok: dict[Side, bool] = {Side.BUY: True, Side.SELL: True}

    def tick_of(self, price: float) -> int:
        return round(price / self.tick_size)

    def _levels(self, side: Side) -> dict[int, float]:
        return self.bids if side is Side.BUY else self.asks

    def best_tick(self, side: Side) -> int | None:
        if not self._best_ok[side]:
            self._best[side] = self._find_best(side)
            self._best_ok[side] = True
        return self._best[side]

    def _find_best(self, side: Side) -> int | None:
        levels = self._levels(side)
        if not levels:
            return None
        old = self._best[side]
        if old is not None:
            step = -int(side)  # bids look down, asks look up
            for k in range(1, self._SCAN_TICKS + 1):
                if old + step * k in levels:
                    return old + step * k
        return max(levels) if side is Side.BUY else min(levels)

    def _set(self, side: Side, tick: int, size: float) -> None:
        levels = self._levels(side)
        best = self._best[side]
        if size > 0.0:
            levels[tick] = float(size)
            if self._best_ok[side]:
                if best is None or (tick > best if side is Side.BUY else tick < best):
                    self._best[side] = tick
            elif tick >= best if side is Side.BUY else tick <= best:  # not ok: best is the bound, never None
                self._best[side] = tick
                self._best_ok[side] = True
        elif levels.pop(tick, None) is not None and tick == best:
            self._best_ok[side] = False

    def _reset(self) -> None:
        self.bids, self.asks = {}, {}
        self._best = {Side.BUY: None, Side.SELL: None}
        self._best_ok = {Side.BUY: True, Side.SELL: True}

    def apply_bbo(self, bid_px: float, bid_size: float, ask_px: float, ask_size: float) -> None:
        bt, at = self.tick_of(bid_px), self.tick_of(ask_px)
        if not self.has_depth:
            # BBO-only data: levels behind the best are not observed, so we keep none of them
            self._reset()
        while (b := self.best_tick(Side.BUY)) is not None and (b > bt or b >= at):
            self._set(Side.BUY, b, 0.0)
        while (a := self.best_tick(Side.SELL)) is not None and (a < at or a <= bt):
            self._set(Side.SELL, a, 0.0)
        self._set(Side.BUY, bt, bid_size)
        self._set(Side.SELL, at, ask_size)

    def apply_snapshot(self, bids: tuple[tuple[float, float], ...], asks: tuple[tuple[float, float], ...]) -> None:
        self._reset()
        for px, sz in bids:
            self._set(Side.BUY, self.tick_of(px), sz)
        for px, sz in asks:
            self._set(Side.SELL, self.tick_of(px), sz)
        self.has_depth = True
        self._bid_floor = min((self.tick_of(px) for px, _ in bids), default=None)
        self._ask_ceiling = max((self.tick_of(px) for px, _ in asks), default=None)

    def apply_diff(self, bids: tuple[tuple[float, float], ...], asks: tuple[tuple[float, float], ...]) -> None:
        # the hot path of an L2 replay (tens of levels per message): _set inlined per side
        tick = self.tick_size
        for side, diff in ((Side.BUY, bids), (Side.SELL, asks)):
            if not diff:
                continue
            levels = self.bids if side is Side.BUY else self.asks
            best = self._best[side]
            best_ok = self._best_ok[side]
            is_bid = side is Side.BUY
            edge: int | None = None
            for px, sz in diff:
                t = round(px / tick)
                if sz > 0.0:
                    levels[t] = float(sz)
                    if best_ok:
                        if best is None or (t > best if is_bid else t < best):
                            best = t
                    elif t >= best if is_bid else t <= best:  # not ok: best is the bound (see __init__)
                        best = t
                        best_ok = True
                elif levels.pop(t, None) is not None and t == best:
                    best_ok = False
                if edge is None or (t < edge if is_bid else t > edge):
                    edge = t
            self._best[side] = best
            self._best_ok[side] = best_ok
            if self.has_depth and edge is not None:
                if is_bid and (self._bid_floor is None or edge < self._bid_floor):
                    self._bid_floor = edge
                elif not is_bid and (self._ask_ceiling is None or edge > self._ask_ceiling):
                    self._ask_ceiling = edge
        # the diff is the newest word on the levels it sets: opposite levels it crosses are stale
        bb, ba = self.best_tick(Side.BUY), self.best_tick(Side.SELL)
        if bb is not None and ba is not None and bb >= ba:
            top_bid = max((self.tick_of(px) for px, sz in bids if sz > 0), default=None)
            top_ask = min((self.tick_of(px) for px, sz in asks if sz > 0), default=None)
            if top_bid is not None:
                while (a := self.best_tick(Side.SELL)) is not None and a <= top_bid:
                    self._set(Side.SELL, a, 0.0)
            if top_ask is not None:
                while (b := self.best_tick(Side.BUY)) is not None and b >= top_ask:
                    self._set(Side.BUY, b, 0.0)

    def level_size(self, side: Side, tick: int) -> float | None:
        """Displayed size at ``tick`` on ``side``: 0.0 if known empty, ``None`` if unknown."""
        levels = self._levels(side)
        if tick in levels:
            return levels[tick]
        best = self.best_tick(side)
        if best is None:
            return None
        better = tick > best if side is Side.BUY else tick < best
        if better:
            return 0.0
        edge = self._bid_floor if side is Side.BUY else self._ask_ceiling
        if self.has_depth and edge is not None:
            inside = tick >= edge if side is Side.BUY else tick <= edge
            if inside:
                return 0.0
        return None

    def crossing_levels(self, side: Side, tick: int) -> list[tuple[int, float]]:
        """Opposite levels at or through our price (asks ``<= tick`` for a bid), best first."""
        opposite = OPPOSITE[side]
        best = self.best_tick(opposite)
        if best is None or (best > tick if side is Side.BUY else best < tick):
            return []
        levels = self._levels(opposite)
        if abs(tick - best) <= 4 * self._SCAN_TICKS:
            step = 1 if side is Side.BUY else -1
            return [(t, levels[t]) for t in range(best, tick + step, step) if t in levels]
        if side is Side.BUY:
            return sorted((t, sz) for t, sz in levels.items() if t <= tick)
        return sorted(((t, sz) for t, sz in levels.items() if t >= tick), reverse=True)

    def crossing_size(self, side: Side, tick: int) -> float:
        """Opposite-side size at or through our price; 0 when the book does not reach it."""
        return sum(sz for _, sz in self.crossing_levels(side, tick))


# --- the implementation the venues use ----------------------------------------------------------

_compiled_fillmodel = compiled.load("apps.engine.execution._fillmodel")
# The compiled classes when they are built and MM_PURE_PYTHON is not set; else the references. The paper venue, the
# Hyperliquid venue and the backtest driver take them from here (docs/compiled-core.md).
LevelBook: type[PyLevelBook] = _compiled_fillmodel.LevelBook if _compiled_fillmodel is not None else PyLevelBook
QueueState: type[PyQueueState] = _compiled_fillmodel.QueueState if _compiled_fillmodel is not None else PyQueueState
FILLMODEL_COMPILED: bool = _compiled_fillmodel is not None
