"""Event and action types shared by feeds, the strategy core, venues and recorders.

Every event carries two clocks, integer nanoseconds since the Unix epoch:
``ts_exch_ns`` (when the exchange stamped it) and ``ts_local_ns`` (when we saw it).
Prices are in quote currency, sizes in base-asset units. Sides are ``+1`` (buy/bid) and ``-1`` (sell/ask).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum


class Side(IntEnum):
    BUY = 1
    SELL = -1

    @property
    def label(self) -> str:
        return "buy" if self is Side.BUY else "sell"


# The other side, by lookup: ``Side(-int(side))`` goes through Enum.__call__, which costs microseconds on a
# path that runs for every resting order on every book change. Keys are Side members, so ints ±1 work too.
OPPOSITE: dict[int, Side] = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}


class EventError(ValueError):
    """An event with values that cannot describe a market (NaN price, crossed book, ...)."""


def _check_price(name: str, value: float, where: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise EventError(f"{where}: {name} must be a finite positive number, got {value!r}")


def _check_size(name: str, value: float, where: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = "non-negative" if allow_zero else "positive"
        raise EventError(f"{where}: {name} must be a finite {bound} number, got {value!r}")


_INT64_MAX = 2**63 - 1


def _check_times(ev: object, where: str) -> None:
    """Both timestamps are integers of ns in [0, 2⁶³): the compiled paths hold them as int64, so a float (1.7e18)
    would be truncated there while the reference compared it as a float, and the two would disagree without a word.
    A NumPy integer is taken as the int it is; a bool, a float, a string or None is an error that names the field."""
    for name in ("ts_exch_ns", "ts_local_ns"):
        v = getattr(ev, name)
        if type(v) is not int:
            if isinstance(v, bool) or not hasattr(type(v), "__index__"):
                raise EventError(f"{where}: {name} must be an integer number of ns, got {type(v).__name__} {v!r}")
            v = operator.index(v)
            object.__setattr__(ev, name, v)
        if not 0 <= v <= _INT64_MAX:
            raise EventError(f"{where}: {name} must be in [0, 2**63) ns, got {v!r}")


@dataclass(frozen=True, slots=True)
class Trade:
    """A trade print. ``aggressor`` is the side of the taker (BUY lifted the ask).

    ``market`` is False for a print that is not a trade between market participants at the book (Binance
    USD-M ``"X": "INSURANCE_FUND"`` liquidations taken over by the insurance fund, ``"ADL"`` auto-deleveraging,
    ``"NA"``): it says nothing about the order flow a quote meets, so κ, flow, Hawkes and the paper venue's fill
    model skip it (they count it). ``kind`` is the venue's label (``"MARKET"`` when the venue gives none).
    """

    ts_exch_ns: int
    ts_local_ns: int
    price: float
    size: float
    aggressor: Side
    trade_id: str = ""
    market: bool = True
    kind: str = "MARKET"

    @property
    def order_key(self) -> tuple[int, int]:
        """The taker order this print belongs to: ``(exchange time, aggressor)``, which every print of one order
        carries (Binance prints each maker it meets as its own trade). A feed without exchange times (0): the local
        time, which one message's prints share."""
        return (self.ts_exch_ns or self.ts_local_ns, int(self.aggressor))

    def __post_init__(self) -> None:
        _check_times(self, "Trade")
        _check_price("price", self.price, "Trade")
        _check_size("size", self.size, "Trade")
        if self.aggressor != 1 and self.aggressor != -1:
            raise EventError(f"Trade: aggressor must be Side.BUY or Side.SELL, got {self.aggressor!r}")


@dataclass(frozen=True, slots=True)
class BestBidAsk:
    """Top of book. A crossed book (bid >= ask) is rejected; a locked one is not representable either."""

    ts_exch_ns: int
    ts_local_ns: int
    bid_px: float
    bid_size: float
    ask_px: float
    ask_size: float
    update_id: int = 0

    def __post_init__(self) -> None:
        _check_times(self, "BestBidAsk")
        _check_price("bid_px", self.bid_px, "BestBidAsk")
        _check_price("ask_px", self.ask_px, "BestBidAsk")
        _check_size("bid_size", self.bid_size, "BestBidAsk", allow_zero=True)
        _check_size("ask_size", self.ask_size, "BestBidAsk", allow_zero=True)
        if self.bid_px >= self.ask_px:
            raise EventError(f"BestBidAsk: crossed or locked book, bid {self.bid_px} >= ask {self.ask_px}")

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid_px + self.ask_px)


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """An L2 diff: each level is (price, new absolute size); size 0 removes the level.

    ``first_update_id``/``last_update_id``/``prev_update_id`` are the exchange sequence ids
    (Binance ``U``/``u``/``pu``); 0 when the venue has none.
    """

    ts_exch_ns: int
    ts_local_ns: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    first_update_id: int = 0
    last_update_id: int = 0
    prev_update_id: int = 0

    def __post_init__(self) -> None:
        _check_times(self, "DepthUpdate")


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A full L2 snapshot; bids best-first (descending), asks best-first (ascending)."""

    ts_exch_ns: int
    ts_local_ns: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    last_update_id: int = 0

    def __post_init__(self) -> None:
        _check_times(self, "DepthSnapshot")


@dataclass(frozen=True, slots=True)
class Funding:
    ts_exch_ns: int
    ts_local_ns: int
    rate: float  # per funding interval, fraction (0.0001 = 1 bp)
    interval_s: float = 8 * 3600.0

    def __post_init__(self) -> None:
        _check_times(self, "Funding")


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """A perpetual's mark price and current funding rate (Binance USD-M ``@markPrice``: ``p``, ``r``, ``T``).

    ``funding_rate`` is the rate that will be paid at ``next_funding_ns`` (fraction per funding interval; longs
    pay when positive). It is an estimate until that time; the rate in force when ``next_funding_ns`` passes is
    the one paid.
    """

    ts_exch_ns: int
    ts_local_ns: int
    mark_price: float
    funding_rate: float
    next_funding_ns: int = 0
    interval_s: float = 8 * 3600.0

    def __post_init__(self) -> None:
        _check_times(self, "MarkPrice")
        _check_price("mark_price", self.mark_price, "MarkPrice")
        if not (isinstance(self.funding_rate, (int, float)) and math.isfinite(self.funding_rate)):
            raise EventError(f"MarkPrice: funding_rate must be a finite number, got {self.funding_rate!r}")
        if not isinstance(self.next_funding_ns, int) or self.next_funding_ns < 0:
            raise EventError(f"MarkPrice: next_funding_ns must be a non-negative integer, got {self.next_funding_ns!r}")


@dataclass(frozen=True, slots=True)
class Timer:
    """A clock tick from the loop driver; lets time-based logic run without market events."""

    ts_exch_ns: int
    ts_local_ns: int

    def __post_init__(self) -> None:
        _check_times(self, "Timer")


# --- our own order flow -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderAck:
    ts_exch_ns: int
    ts_local_ns: int
    client_order_id: str
    status: str  # "open" | "cancelled" | "modified"
    price: float = 0.0
    size: float = 0.0

    def __post_init__(self) -> None:
        _check_times(self, "OrderAck")


@dataclass(frozen=True, slots=True)
class OrderReject:
    ts_exch_ns: int
    ts_local_ns: int
    client_order_id: str
    reason: str

    def __post_init__(self) -> None:
        _check_times(self, "OrderReject")


@dataclass(frozen=True, slots=True)
class Fill:
    """One of our orders traded. ``fee`` is in quote currency, negative for a rebate."""

    ts_exch_ns: int
    ts_local_ns: int
    client_order_id: str
    fill_id: str
    side: Side
    price: float
    size: float
    fee: float = 0.0
    liquidity: str = "maker"  # "maker" | "taker"
    remaining: float = 0.0

    def __post_init__(self) -> None:
        _check_times(self, "Fill")


MarketEvent = Trade | BestBidAsk | DepthUpdate | DepthSnapshot | Funding | MarkPrice | Timer
OrderEvent = OrderAck | OrderReject | Fill
Event = MarketEvent | OrderEvent


# --- actions from the strategy core to a venue -----------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    client_order_id: str
    side: Side
    price: float
    size: float
    tif: str = "GTC"  # "GTC" | "IOC" | "POST_ONLY"


@dataclass(frozen=True, slots=True)
class CancelOrder:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class ModifyOrder:
    client_order_id: str
    price: float
    size: float


@dataclass(frozen=True, slots=True)
class CancelAll:
    reason: str = ""


Action = PlaceOrder | CancelOrder | ModifyOrder | CancelAll


@dataclass(frozen=True, slots=True)
class QuoteDecision:
    """What the quoter decided and every input that produced it (principle 2: traceable quotes).

    Prices are absolute; ``None`` means that side is not quoted (``reasons`` says why).
    ``inputs`` maps a named input (mid, sigma, kappa, gamma, q, each skew, ...) to its value: the GLFT quoter's is the
    typed record :class:`apps.engine.market.inputs.DecisionInputs` (names shared, values as doubles), a baseline's a
    plain dict; readers use the ``Mapping`` interface only.
    """

    ts_ns: int
    bid_px: float | None
    ask_px: float | None
    bid_size: float
    ask_size: float
    inputs: Mapping[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
