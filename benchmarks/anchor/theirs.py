"""hftbacktest 2.4.4's side of ``make bench-anchor``: convert the recording, and run a GLFT market maker in its API.

Runs under the anchor virtualenv's Python (``var/anchor-venv``, hftbacktest + numba), never the project's, so
it imports nothing from the project. Two subcommands, each printing one JSON object on its last stdout line:

``convert RAW NPZ``
    hftbacktest's own converter for Binance USD-M combined-stream recordings
    (``hftbacktest.data.utils.binancefutures.convert``, default options: ``bookTicker`` and ``markPrice`` are
    dropped, each depth message becomes one row per price level, each trade one row, the REST snapshot one
    clear row per side plus one row per level), saved as ``.npz``. Reports the row counts by kind.
``run NPZ PASSES``
    The GLFT market maker below, once untimed on a small slice (numba compiles it) and then timed on the whole
    file, best of ``PASSES``: building the backtest from the in-memory rows, the strategy loop and ``close``.

The strategy is the logic of hftbacktest's tutorial "GLFT Market Making Model and Grid Trading" (one quote a
side), written here again: every ``STEP_NS`` the strategy reads the trades since the last step and the book;
it records the depth of the deepest market order from the mid (ticks) and the mid change; every ``REFIT_STEPS``
it fits the trading intensity λ(δ) = A·exp(−k·δ) by a linear regression of log λ on depth over the last
``WINDOW_STEPS``, and σ as the standard deviation of the mid changes scaled to one second; it then quotes
GLFT's half spread and skew (Guéant, Lehalle, Fernandez-Tapia) around the mid, never inside the touch, post-only,
one order per side, while |position| stays under the limit. Differences from the tutorial: the window is 60 s
(the tutorial's 10 min is longer than the 5 min 45 s recording), and the position enters the skew in order
units (q / order size), so the tutorial's γ keeps its meaning with 0.01 BTC orders.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from hftbacktest import (
    BUY,
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    FILLED,
    GTX,
    LIMIT,
    SELL,
    TRADE_EVENT,
    BacktestAsset,
    HashMapMarketDepthBacktest,
)
from numba import njit

# The venue assumptions (same values as the project side, benchmarks/anchor/ours.py)
TICK_SIZE = 0.1  # USDT
LOT_SIZE = 0.001  # BTC
ORDER_QTY = 0.01  # BTC
MAX_POSITION = 0.2  # BTC
LATENCY_NS = 10_000_000  # constant, each way (order entry and response)
MAKER_FEE = -0.00005  # -0.5 bps, a rebate
TAKER_FEE = 0.0007  # 7 bps

# The tutorial's strategy constants, with the window shortened (see the module docstring)
STEP_NS = 100_000_000  # 100 ms between strategy wake-ups
WINDOW_STEPS = 600  # 60 s of 100 ms steps for the A, k and σ fits
REFIT_STEPS = 50  # refit every 5 s
GAMMA = 0.05  # risk aversion, per order unit of position, as in the tutorial
DELTA = 1.0  # order size in the GLFT formulas, order units
ADJ1 = 1.0  # half-spread multiplier
ADJ2 = 0.05  # skew multiplier (the tutorial uses γ)
WARMUP_ROWS = 50_000  # rows of the untimed compile run


@njit(cache=True)
def _regress(x, y):
    n = len(x)
    sx = np.sum(x)
    sy = np.sum(y)
    slope = (n * np.sum(x * y) - sx * sy) / (n * np.sum(x * x) - sx * sx)
    return slope, (sy - slope * sx) / n


@njit(cache=True)
def _intensity(depths, counts):
    """Counts, for each quote depth i + 0.5 ticks from the mid, the steps whose deepest trade went beyond it."""
    top = 0
    for d in depths:
        if not np.isfinite(d):
            continue
        tick = round(d / 0.5) - 1  # numba's round of a float is an int, as Python's
        if tick < 0 or tick >= len(counts):
            continue  # a trade on the wrong side of the previous mid, or beyond the grid
        counts[:tick] += 1
        top = max(top, tick)
    return counts[:top]


@njit(cache=True)
def _glft_coefficients(gamma, delta, a, k):
    c1 = 1.0 / (gamma * delta) * np.log(1.0 + gamma * delta / k)
    c2 = np.sqrt(gamma / (2.0 * a * delta * k) * (1.0 + gamma * delta / k) ** (k / (gamma * delta) + 1.0))
    return c1, c2


@njit
def glft(hbt, order_qty, max_position, max_steps):
    """The strategy loop; returns (buy fills, sell fills, Σ half spread bps, steps quoted both sides).

    ``max_steps`` sizes the history arrays to the data's span: the tutorial's fixed 10 million steps would
    spend tens of ms filling 160 MB and put that in hftbacktest's time.
    """
    tick_size = hbt.depth(0).tick_size
    depths = np.full(max_steps, np.nan)
    mid_changes = np.full(max_steps, np.nan)
    counts = np.zeros(500)
    grid = np.arange(500) + 0.5
    a = np.nan
    k = np.nan
    sigma = np.nan
    mid_tick = np.nan
    buys = 0
    sells = 0
    half_spread_sum_bps = 0.0
    quoted_steps = 0
    t = 0
    while hbt.elapse(STEP_NS) == 0:
        if not np.isnan(mid_tick):
            deepest = -np.inf
            for trade in hbt.last_trades(0):
                px_tick = trade.px / tick_size
                d = px_tick - mid_tick if trade.ev & BUY_EVENT == BUY_EVENT else mid_tick - px_tick
                deepest = max(deepest, d)
            depths[t] = deepest
        hbt.clear_last_trades(0)

        orders = hbt.orders(0)
        values = orders.values()
        while values.has_next():  # count fills before clear_inactive_orders forgets them
            order = values.get()
            if order.status == FILLED:
                if order.side == BUY:
                    buys += 1
                else:
                    sells += 1
        hbt.clear_inactive_orders(0)

        depth = hbt.depth(0)
        position = hbt.position(0)
        best_bid_tick = depth.best_bid_tick
        best_ask_tick = depth.best_ask_tick
        previous = mid_tick
        mid_tick = (best_bid_tick + best_ask_tick) / 2.0
        mid_changes[t] = mid_tick - previous

        if t % REFIT_STEPS == 0 and t >= WINDOW_STEPS - 1:
            counts[:] = 0.0
            lam = _intensity(depths[t + 1 - WINDOW_STEPS : t + 1], counts)
            if len(lam) > 2:
                lam = lam[:70] / (WINDOW_STEPS * STEP_NS / 1e9)
                slope, log_a = _regress(grid[: len(lam)], np.log(lam))
                a = np.exp(log_a)
                k = -slope
            sigma = np.nanstd(mid_changes[t + 1 - WINDOW_STEPS : t + 1]) * np.sqrt(1e9 / STEP_NS)

        c1, c2 = _glft_coefficients(GAMMA, DELTA, a, k)
        half_spread_tick = (c1 + DELTA / 2.0 * c2 * sigma) * ADJ1
        skew = c2 * sigma * ADJ2
        reservation_tick = mid_tick - skew * position / order_qty
        bid_price = min(np.round(reservation_tick - half_spread_tick), best_bid_tick) * tick_size
        ask_price = max(np.round(reservation_tick + half_spread_tick), best_ask_tick) * tick_size
        if np.isfinite(bid_price) and np.isfinite(ask_price):
            mid = mid_tick * tick_size
            half_spread_sum_bps += (ask_price - bid_price) / 2.0 / mid * 1e4
            quoted_steps += 1

        values = orders.values()
        while values.has_next():
            order = values.get()
            if order.cancellable and (
                (order.side == BUY and order.price != bid_price) or (order.side == SELL and order.price != ask_price)
            ):
                hbt.cancel(0, order.order_id, False)
        if position < max_position and np.isfinite(bid_price):
            oid = round(bid_price / tick_size)
            if oid not in orders:
                hbt.submit_buy_order(0, oid, bid_price, order_qty, GTX, LIMIT, False)
        if position > -max_position and np.isfinite(ask_price):
            oid = round(ask_price / tick_size)
            if oid not in orders:
                hbt.submit_sell_order(0, oid, ask_price, order_qty, GTX, LIMIT, False)
        t += 1
        if t >= max_steps:
            raise IndexError("more strategy steps than the data's span allows")
    return buys, sells, half_spread_sum_bps, quoted_steps


def _asset(rows):
    return (
        BacktestAsset()
        .data(rows)
        .linear_asset(1.0)
        .constant_order_latency(LATENCY_NS, LATENCY_NS)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(MAKER_FEE, TAKER_FEE)
        .tick_size(TICK_SIZE)
        .lot_size(LOT_SIZE)
        .last_trades_capacity(10_000)
    )


def _run(rows) -> dict:
    span_ns = int(rows["local_ts"].max()) - int(rows["local_ts"].min())
    hbt = HashMapMarketDepthBacktest([_asset(rows)])
    buys, sells, hs_sum, quoted = glft(hbt, ORDER_QTY, MAX_POSITION, span_ns // STEP_NS + 2)
    depth = hbt.depth(0)
    mid = (depth.best_bid + depth.best_ask) / 2.0
    state = hbt.state_values(0)
    position, balance, fee = state.position, state.balance, state.fee
    hbt.close()
    return {
        "fills_buy": int(buys),
        "fills_sell": int(sells),
        "volume_buy": int(buys) * ORDER_QTY,  # no partial fills: a fill is the whole order
        "volume_sell": int(sells) * ORDER_QTY,
        "position": float(position),
        "pnl": float(balance + position * mid - fee),
        "fees": float(fee),
        "mean_half_spread_bps": hs_sum / quoted if quoted else None,
        "quoted_steps": int(quoted),
    }


def convert(raw: str, npz: str) -> dict:
    from hftbacktest.data.utils import binancefutures

    t0 = time.perf_counter()
    rows = binancefutures.convert(raw, output_filename=npz)
    kinds = rows["ev"] & 0xFF
    return {
        "rows": len(rows),
        "depth_rows": int(np.sum(kinds == DEPTH_EVENT)),
        "trade_rows": int(np.sum(kinds == TRADE_EVENT)),
        "snapshot_rows": int(np.sum(kinds == DEPTH_SNAPSHOT_EVENT)),
        "clear_rows": int(np.sum(kinds == DEPTH_CLEAR_EVENT)),
        "convert_s": time.perf_counter() - t0,
    }


def run(npz: str, passes: str = "2") -> dict:
    passes = int(passes)
    rows = np.load(npz)["data"]
    t0 = time.perf_counter()
    _run(np.ascontiguousarray(rows[:WARMUP_ROWS]))
    compile_s = time.perf_counter() - t0
    wall_s = float("inf")
    for _ in range(passes):  # best of ``passes``, each a new backtest on the same rows
        t0 = time.perf_counter()
        out = _run(rows)
        wall_s = min(wall_s, time.perf_counter() - t0)
    out["wall_s"] = wall_s
    out["rows"] = len(rows)
    out["warmup_s"] = compile_s
    return out


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    result = convert(*args) if command == "convert" else run(*args)
    print(json.dumps(result))
