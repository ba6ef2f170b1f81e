"""A small session record (quotes of its instrument and its fills) written with plain SQL on any DB-API cursor, so
the same rows can go to Django's test database and to a TimescaleDB engine; and an obviously-correct oracle of
the per-bucket P&L and inventory that :mod:`apps.trading.selectors` must reproduce."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

T0_NS = 1_796_032_800 * 10**9  # 2026-11-30 10:00:00 UTC, a whole minute
NS = 10**9


@dataclass(frozen=True)
class Record:
    quotes: list[tuple[int, float, float]]  # (ts_ns, bid, ask)
    fills: list[tuple[int, int, float, float, float]]  # (ts_ns, side, price, size, fee)


def make_record(seed: int, seconds: int = 300, n_quotes: int = 400, n_fills: int = 90, quote_from_s: int = 0) -> Record:
    """Quotes and fills at distinct nanosecond times over ``seconds``; lots of 0.001, some fees negative (rebates).
    Quotes start ``quote_from_s`` seconds in, so fills before that have no mid to be marked to."""
    rng = random.Random(seed)
    times = rng.sample(range(1, seconds * 1000), n_quotes + n_fills)  # distinct milliseconds
    q_times = sorted(t for t in times[:n_quotes] if t >= quote_from_s * 1000)
    mid = 100.0
    quotes = []
    for t in q_times:
        mid = round(mid + rng.choice((-0.05, 0.0, 0.05)), 2)
        quotes.append((T0_NS + t * 10**6, round(mid - 0.05, 2), round(mid + 0.05, 2)))
    fills = []
    for t in sorted(times[n_quotes:]):
        side = rng.choice((1, -1))
        price = round(100.0 + rng.uniform(-1, 1), 2)
        size = rng.randint(1, 50) / 1000
        fee = round(price * size * rng.choice((0.0002, -0.0001, 0.0)), 9)
        fills.append((T0_NS + t * 10**6, side, price, size, fee))
    return Record(quotes, fills)


def ns_dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // NS, tz=UTC).replace(microsecond=(ns % NS) // 1000)


def load(cur: Any, rec: Record, symbol: str = "PNLTEST") -> tuple[int, int]:
    """Write the instrument, a session, its quotes and fills; return (instrument_id, session_id)."""
    cur.execute(
        "INSERT INTO marketdata_instrument (venue, symbol, kind, tick_size, lot_size, contract_multiplier) "
        "VALUES ('sim', %s, 'perp', 0.01, 0.001, 1) RETURNING id",
        (symbol,),
    )
    iid = cur.fetchone()[0]
    cur.execute(
        "INSERT INTO trading_tradingsession (name, mode, feed, instrument_id, status, status_reason, params, seed, "
        "created_at, started_at, lease_owner, last_state) VALUES ('pnl', 'paper', 'simulator', %s, 'stopped', '', "
        "'{}', 0, %s, %s, '', '{}') RETURNING id",
        (iid, ns_dt(T0_NS), ns_dt(T0_NS)),
    )
    sid = cur.fetchone()[0]
    for i, (ts, bid, ask) in enumerate(rec.quotes):
        cur.execute(
            "INSERT INTO marketdata_quotetick (instrument_id, ts, ts_exch_ns, ts_local_ns, bid_px, bid_size, ask_px, "
            "ask_size, update_id, dedupe_key) VALUES (%s, %s, %s, %s, %s, 1, %s, 1, %s, %s)",
            (iid, ns_dt(ts), ts, ts, bid, ask, i, i),
        )
    for i, (ts, side, price, size, fee) in enumerate(rec.fills):
        cur.execute(
            "INSERT INTO trading_fillrecord (session_id, ts, ts_ns, client_order_id, fill_id, side, price, size, fee, "
            "liquidity) VALUES (%s, %s, %s, 'c', %s, %s, %s, %s, %s, 'maker')",
            (sid, ns_dt(ts), ts, f"f{i}", side, price, size, fee),
        )
    return iid, sid


def oracle(rec: Record, start_ns: int, end_ns: int, step_s: int) -> list[tuple]:
    """(bucket start ns, n_fills, inventory, cash, mark, pnl) for every bucket in [start, end) with a fill or a
    quote, from the whole record: state at the bucket's end; the mark is the last mid before it, or before any
    quote the last fill price."""
    step = step_s * NS
    start_ns -= start_ns % step
    buckets = sorted({t - t % step for t, *_ in rec.quotes + rec.fills if start_ns <= t < end_ns})
    out = []
    for b in buckets:
        end = b + step
        done = [f for f in rec.fills if f[0] < end]
        inventory = round(sum(s * x for _t, s, _p, x, _f in done), 12)
        cash = sum(-s * p * x - f for _t, s, p, x, f in done)
        mids = [(bid + ask) / 2 for t, bid, ask in rec.quotes if t < end]
        mark = mids[-1] if mids else (done[-1][2] if done else None)
        pnl = cash if inventory == 0 else (None if mark is None else cash + inventory * mark)
        n = sum(1 for f in rec.fills if b <= f[0] < end)
        out.append((b, n, inventory, cash, mark, pnl))
    return out


def as_tuples(bars: list) -> list[tuple]:
    return [(round(b.bucket.timestamp()) * NS, b.n_fills, b.inventory, b.cash, b.mid, b.pnl) for b in bars]
