"""Known instruments: the venues' tick size, lot size and base-tier maker/taker fees, so that importing or
backtesting one of them needs no ``--tick-size``, ``--lot-size`` or ``--params``.

Names are the ones :mod:`apps.marketdata.identify` reads out of recorded files (``binance-usdm:BTCUSDT``,
``binance-spot:BTCUSDT``, ``hyperliquid:BTC``), so a file's own records pick its entry.

Units: ``tick_size`` in the quote currency, ``lot_size`` in base units, fees as fractions of notional
(0.0002 = 0.02 % = 2 bps; negative would be a rebate). Fees are the base tier (no VIP level, no BNB or staking
discount, no referral): what an account without history pays, the conservative choice for a backtest.

Sources (checked for this registry; a venue changes them, so re-check before trusting a live P&L):

* Binance USD-M futures, tick and lot: the ``PRICE_FILTER.tickSize`` and ``LOT_SIZE.stepSize`` of
  ``GET https://fapi.binance.com/fapi/v1/exchangeInfo`` (Binance USD-M Futures API docs, "Exchange Information");
  the same values are in the shared recordings' manifests (``hftbacktest-binance-usdm-*/MANIFEST.md``).
  Fees: https://www.binance.com/en/fee/futureFee, regular user / VIP 0, USDⓈ-M: maker 0.0200 %, taker 0.0500 %.
* Binance spot, tick and lot: ``PRICE_FILTER``/``LOT_SIZE`` of ``GET https://api.binance.com/api/v3/exchangeInfo``
  (Binance Spot API docs, "Filters"); BTCUSDT's also in ``hftbacktest-binance-spot-btcusdt-20240808/MANIFEST.md``.
  Fees: https://www.binance.com/en/fee/schedule, regular user: maker 0.1000 %, taker 0.1000 % (the developer docs'
  commission example answers ``"makerCommission": "0.001"``).
* Hyperliquid perpetuals: https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/tick-and-lot-size:
  sizes have at most ``szDecimals`` decimals (BTC: 5, so a lot of 0.00001 BTC); prices at most 5 significant
  figures, integers always allowed, so above 10,000 USD a BTC price moves in whole dollars (tick 1 USD; the shared
  recording's book prints in 1 USD steps at about 105,000). Fees:
  https://hyperliquid.gitbook.io/hyperliquid-docs/trading/fees, perps tier 0 (14-day volume below 5 M USD):
  taker 0.045 %, maker 0.015 % (``userCrossRate`` 0.00045 / ``userAddRate`` 0.00015 in the info API's
  ``userFees`` answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SIMULATOR = "sim"  # the venue name of the built-in market simulator's instruments


@dataclass(frozen=True)
class KnownInstrument:
    venue: str
    symbol: str
    kind: str  # an Instrument.Kind value
    tick_size: float  # quote currency
    lot_size: float  # base units
    maker_fee: float  # fraction of notional
    taker_fee: float  # fraction of notional
    base: str
    quote: str
    source: str  # where the numbers come from (see the module docstring)

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"

    def venue_params(self) -> dict[str, float]:
        """The ``params.venue`` section of the paper venue for this instrument."""
        return {
            "tick_size": self.tick_size,
            "lot_size": self.lot_size,
            "maker_fee": self.maker_fee,
            "taker_fee": self.taker_fee,
        }

    def strategy_fee_params(self) -> dict[str, float]:
        """The quoter's own view of the fees (its E[P&L] filter and taker decision), in bps."""
        return {"maker_fee_bps": round(self.maker_fee * 1e4, 6), "taker_fee_bps": round(self.taker_fee * 1e4, 6)}


_BINANCE_USDM = "fapi/v1/exchangeInfo + binance.com/en/fee/futureFee (VIP 0)"
_BINANCE_SPOT = "api/v3/exchangeInfo + binance.com/en/fee/schedule (regular user)"
_HYPERLIQUID = "hyperliquid-docs: tick-and-lot-size + trading/fees (perps tier 0)"

KNOWN: tuple[KnownInstrument, ...] = (
    KnownInstrument("binance-usdm", "BTCUSDT", "perp", 0.1, 0.001, 0.0002, 0.0005, "BTC", "USDT", _BINANCE_USDM),
    KnownInstrument("binance-usdm", "ETHUSDT", "perp", 0.01, 0.001, 0.0002, 0.0005, "ETH", "USDT", _BINANCE_USDM),
    KnownInstrument("binance-spot", "BTCUSDT", "spot", 0.01, 0.00001, 0.001, 0.001, "BTC", "USDT", _BINANCE_SPOT),
    KnownInstrument("binance-spot", "ETHUSDT", "spot", 0.01, 0.0001, 0.001, 0.001, "ETH", "USDT", _BINANCE_SPOT),
    KnownInstrument("hyperliquid", "BTC", "perp", 1.0, 0.00001, 0.00015, 0.00045, "BTC", "USD", _HYPERLIQUID),
)

_BY_KEY = {(k.venue, k.symbol): k for k in KNOWN}


def lookup(venue: str | None, symbol: str | None) -> KnownInstrument | None:
    """The registry's entry for ``venue:symbol`` (symbol case-insensitive), or None."""
    if not venue or not symbol:
        return None
    return _BY_KEY.get((venue, symbol.upper()))


def known_keys() -> list[str]:
    return [k.key for k in KNOWN]


def get(key: str) -> KnownInstrument:
    """The entry named ``venue:symbol``; ValueError naming the known ones otherwise."""
    venue, _, symbol = key.partition(":")
    found = lookup(venue, symbol)
    if found is None:
        raise ValueError(f"unknown instrument {key!r}; known: {', '.join(known_keys())}")
    return found


# quote currencies a symbol may end in, longest first (BTCUSDT is BTC/USDT, not BTCUS/DT)
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "BTC", "ETH", "BNB")


def currencies(symbol: str, venue: str = "") -> tuple[str, str]:
    """(base, quote) of a symbol such as ``BTCUSDT`` or ``BTCUSD_PERP``; ``("base", "quote")`` when unknown.
    Hyperliquid perps (``BTC``) and LOBSTER equities (``AMZN``) are quoted in USD; a known instrument says its own."""
    known = lookup(venue, symbol)
    if known is not None:
        return known.base, known.quote
    core = symbol.upper().split("_")[0].replace("-", "").replace("/", "")
    for q in _QUOTES:
        if core.endswith(q) and len(core) > len(q):
            return core[: -len(q)], q
    if venue in ("hyperliquid", "nasdaq"):
        return core, "USD"
    return "base", "quote"


def with_instrument_defaults(
    params: dict[str, Any], known: KnownInstrument | None, *, grid: bool = True
) -> dict[str, Any]:
    """``params`` with the instrument's venue grid and fees (and the quoter's fee view) filled in where the caller
    gave none: what the caller wrote always wins. Unchanged when the instrument is not known. ``grid=False`` fills
    the fees only (a stored instrument's row already says its tick and lot)."""
    if known is None or not isinstance(params, dict):
        return params
    out = dict(params)
    venue = out.get("venue", {})
    if isinstance(venue, dict):
        defaults = known.venue_params()
        if not grid:
            defaults = {k: v for k, v in defaults.items() if k not in ("tick_size", "lot_size")}
        out["venue"] = {**defaults, **venue}
    strategy = out.get("strategy", {})
    if isinstance(strategy, dict):
        out["strategy"] = {**known.strategy_fee_params(), **strategy}
    return out


def ensure_known_instrument(known: KnownInstrument) -> Any:
    """The database row of a registry instrument, created from the registry on first use. A row that exists is
    returned as it is: its stored ticks were recorded on its grid."""
    from apps.marketdata.models import Instrument
    from apps.marketdata.services import ensure_instrument

    row = Instrument.objects.filter(venue=known.venue, symbol=known.symbol).first()
    if row is not None:
        return row
    return ensure_instrument(
        known.venue, known.symbol, kind=known.kind, tick_size=known.tick_size, lot_size=known.lot_size
    )
