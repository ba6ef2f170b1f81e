"""Hyperliquid perps price and size rules, from the info endpoint's ``meta`` (``universe[i].szDecimals``).

* Sizes: at most ``szDecimals`` decimals (lot = 10^-szDecimals).
* Prices: at most 5 significant figures, and at most ``MAX_DECIMALS - szDecimals`` decimals (6 for perps);
  an integer price is always allowed whatever its number of figures.

An invalid price or size raises :class:`InvalidOrderError` naming the field *before* anything is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

MAX_DECIMALS_PERP = 6
MAX_SIG_FIGS = 5


class InvalidOrderError(ValueError):
    """A price or size the venue would reject; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class AssetRules:
    """One perp of the universe: ``asset`` is its index (the ``a`` of order wires)."""

    coin: str
    asset: int
    sz_decimals: int
    max_leverage: int = 1

    @property
    def price_decimals(self) -> int:
        return max(0, MAX_DECIMALS_PERP - self.sz_decimals)

    @property
    def lot_size(self) -> float:
        return 10.0**-self.sz_decimals

    def tick_at(self, price: float) -> float:
        """The price step at ``price``: the 5-significant-figure step, not finer than the decimals rule, >= 1e-k."""
        if not (math.isfinite(price) and price > 0):
            raise InvalidOrderError("price", f"must be a finite positive number, got {price!r}")
        exp = math.floor(math.log10(price)) - (MAX_SIG_FIGS - 1)
        exp = max(exp, -self.price_decimals)
        return 10.0 ** min(exp, 0) if exp <= 0 else 1.0  # integer prices are always valid

    def check_price(self, price: float) -> str:
        """The wire string of a valid price, else :class:`InvalidOrderError`."""
        if not (isinstance(price, (int, float)) and math.isfinite(price) and price > 0):
            raise InvalidOrderError("price", f"must be a finite positive number, got {price!r}")
        d = Decimal(repr(float(price))).normalize()
        if d == d.to_integral_value():
            return format(d.quantize(Decimal(1)), "f")
        decimals = -d.as_tuple().exponent
        if decimals > self.price_decimals:
            raise InvalidOrderError(
                "price",
                f"{price} has {decimals} decimals; {self.coin} allows at most {self.price_decimals} "
                f"({MAX_DECIMALS_PERP} - szDecimals {self.sz_decimals})",
            )
        if len(d.as_tuple().digits) > MAX_SIG_FIGS:
            raise InvalidOrderError("price", f"{price} has more than {MAX_SIG_FIGS} significant figures")
        return format(d, "f")

    def check_size(self, size: float) -> str:
        """The wire string of a valid size, else :class:`InvalidOrderError`."""
        if not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
            raise InvalidOrderError("size", f"must be a finite positive number, got {size!r}")
        d = Decimal(repr(float(size))).normalize()
        decimals = max(0, -d.as_tuple().exponent)
        if decimals > self.sz_decimals:
            raise InvalidOrderError(
                "size", f"{size} has {decimals} decimals; {self.coin} szDecimals is {self.sz_decimals}"
            )
        return format(d, "f")

    def round_price(self, price: float, is_buy: bool) -> float:
        """The nearest valid price on the passive side (bids down, asks up)."""
        tick = Decimal(repr(self.tick_at(price)))
        mode = ROUND_FLOOR if is_buy else ROUND_CEILING
        q = (Decimal(repr(float(price))) / tick).to_integral_value(rounding=mode) * tick
        return float(q)

    def round_size(self, size: float) -> float:
        q = Decimal(repr(float(size))).quantize(Decimal(1).scaleb(-self.sz_decimals), rounding=ROUND_FLOOR)
        return float(q)


def rules_from_meta(meta: dict) -> dict[str, AssetRules]:
    """``{coin: AssetRules}`` from a ``meta`` response ``{"universe": [{"name", "szDecimals", ...}, ...]}``."""
    universe = meta.get("universe") if isinstance(meta, dict) else None
    if not isinstance(universe, list):
        raise ValueError("meta: 'universe' must be a list")
    out: dict[str, AssetRules] = {}
    for i, a in enumerate(universe):
        if not isinstance(a, dict) or not isinstance(a.get("name"), str) or not isinstance(a.get("szDecimals"), int):
            raise ValueError(f"meta: universe[{i}] needs 'name' (str) and 'szDecimals' (int), got {a!r}")
        out[a["name"]] = AssetRules(a["name"], i, a["szDecimals"], int(a.get("maxLeverage", 1)))
    return out
