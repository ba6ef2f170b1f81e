"""Reads for the review page's analytics: bounded queries that hand :mod:`apps.review.analytics` its inputs.

Nothing here loads a session's ticks into Python. Per fill, the mids it needs (just before the fill and at each
horizon) come from one ``LEFT JOIN LATERAL … ORDER BY ts DESC LIMIT 1`` each, an index scan on
``(instrument, ts)`` or ``(session, ts)``; quote time per distance bucket and the spread series are aggregated in
SQL (``LEAD`` durations, ``width_bucket``, ``date_bin``). What does reach Python is capped and the answer says so:
at most :data:`MAX_FILLS` fills (the first ones) and :data:`MAX_TRADES` public trades (a systematic 1-in-k sample
of the range when there are more, counts scaled back by k).

Mids
----
``ticks``: ``(bid_px + ask_px)/2`` from ``QuoteTick`` of the session's instrument, when any is stored inside the
session's span (a live/paper session that records its feed, a backtest on a stored range); times compared are the
event times (``ts``, exchange time when the venue sends one), as fills and ticks both store them.
``decisions``: the ``mid`` of the session's own decisions (any session), compared on local time (a fill's
``ts_ns``). ``?mid_source=`` forces one. Caveat: simulated sessions sharing an instrument over overlapping times
share its tick tables; choose ``decisions`` for them.

Public trades: ``TradeTick`` of the instrument over the session's span, each paired with the mid strictly before
it. A backtest on files may have none stored: the answer then says so instead of failing.
"""

# ruff: noqa: S608 - the SQL is assembled from this module's fixed table names and fragments; values are parameters
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection

from apps.marketdata.models import QuoteTick, TradeTick
from apps.review import analytics
from apps.review import decision_aggregates as aggregates
from apps.trading.models import FillRecord, QuoteDecisionRecord, TradingSession

MAX_FILLS = 20_000
MAX_TRADES = 100_000
MID_LOOKBACK = timedelta(minutes=10)  # a mid older than this is not "the mid in force" (bounds each index scan)
MID_SOURCES = ("ticks", "decisions")
NO_TRADES = "no public trades stored for this range"

FILLS = FillRecord._meta.db_table
DECISIONS = QuoteDecisionRecord._meta.db_table
QUOTES = QuoteTick._meta.db_table
TRADES = TradeTick._meta.db_table

_DEC_OK = "d.mid > 0 AND d.mid <> 'NaN'::float8"  # NaN sorts above every number in PostgreSQL
_LOCAL = "(timestamptz 'epoch' + ({t}.ts_ns / 1000) * interval '1 microsecond')"


def _rows(sql: str, params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


@dataclass(frozen=True)
class Span:
    """The session's time span: first and last decision or fill (event times), seconds between them."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def session_span(session: TradingSession) -> Span | None:
    """First and last of the session's decisions and fills (two index-only min/max pairs); None if it has none."""
    row = _rows(
        f"""SELECT least((SELECT min(ts) FROM {DECISIONS} WHERE session_id = %(s)s),
                         (SELECT min(ts) FROM {FILLS} WHERE session_id = %(s)s)),
                   greatest((SELECT max(ts) FROM {DECISIONS} WHERE session_id = %(s)s),
                            (SELECT max(ts) FROM {FILLS} WHERE session_id = %(s)s))""",
        {"s": session.pk},
    )[0]
    return Span(row[0], row[1]) if row[0] is not None else None


@dataclass(frozen=True)
class MidSource:
    """Where mids come from (module docstring) and how to find the one in force at a time."""

    kind: str
    session_id: int
    instrument_id: int
    end: datetime | None  # the last mid of the series that horizons may use

    def lateral(self, time_expr: str, *, strict: bool) -> str:
        """SQL selecting ``mid`` in force at ``time_expr`` (strictly before it with ``strict``), for a LATERAL join.
        Uses the params ``sid``, ``inst``, ``lookback``."""
        op = "<" if strict else "<="
        if self.kind == "ticks":
            return (
                f"SELECT (q.bid_px + q.ask_px) / 2 AS mid FROM {QUOTES} q WHERE q.instrument_id = %(inst)s"
                f" AND q.ts {op} {time_expr} AND q.ts > {time_expr} - %(lookback)s"
                " AND q.bid_px > 0 AND q.ask_px >= q.bid_px AND q.ask_px <> 'NaN'::float8"
                " ORDER BY q.ts DESC, q.id DESC LIMIT 1"
            )
        return (
            f"SELECT d.mid FROM {DECISIONS} d WHERE d.session_id = %(sid)s AND d.ts {op} {time_expr}"
            f" AND d.ts > {time_expr} - %(lookback)s AND {_DEC_OK} ORDER BY d.ts DESC, d.id DESC LIMIT 1"
        )

    def time_of(self, alias: str) -> str:
        """The time of a fill or trade row ``alias`` on this source's clock."""
        if self.kind == "ticks":
            return f"{alias}.ts"
        return _LOCAL.format(t=alias) if alias == "f" else _local_trade(alias)

    def params(self) -> dict[str, Any]:
        return {"sid": self.session_id, "inst": self.instrument_id, "lookback": MID_LOOKBACK}


def _local_trade(alias: str) -> str:
    return f"(timestamptz 'epoch' + ({alias}.ts_local_ns / 1000) * interval '1 microsecond')"


def mid_source(session: TradingSession, span: Span, choice: str | None = None) -> MidSource:
    """``ticks`` if quote ticks are stored inside the span (or ``choice`` says so), else ``decisions``."""
    if choice is not None and choice not in MID_SOURCES:
        raise ValueError(f"mid_source must be one of {', '.join(MID_SOURCES)}, got {choice!r}")
    horizon = timedelta(seconds=max(analytics.HORIZONS_S) + 1)
    if choice != "decisions":
        end = _rows(
            f"SELECT max(ts) FROM {QUOTES} WHERE instrument_id = %(i)s AND ts >= %(a)s AND ts <= %(b)s",
            {"i": session.instrument_id, "a": span.start - MID_LOOKBACK, "b": span.end + horizon},
        )[0][0]
        if end is not None or choice == "ticks":
            return MidSource("ticks", session.pk, session.instrument_id, end)
    end = _rows(f"SELECT max(ts) FROM {DECISIONS} d WHERE session_id = %(s)s AND {_DEC_OK}", {"s": session.pk})[0][0]
    return MidSource("decisions", session.pk, session.instrument_id, end)


def _empty(reason: str) -> dict[str, Any]:
    return {"empty": True, "message": reason}


# --------------------------------------------------------------------------------------------------
# Markouts
# --------------------------------------------------------------------------------------------------


def load_markouts(
    session: TradingSession, mid_choice: str | None = None, horizons_s: tuple[float, ...] = analytics.HORIZONS_S
) -> dict[str, Any]:
    """Markout curves of the session's fills (at most :data:`MAX_FILLS`, the first by time), mids from SQL."""
    span = session_span(session)
    n_fills = FillRecord.objects.filter(session=session).count()
    if span is None or n_fills == 0:
        return {**_empty("no fills in this session"), "n_fills_total": n_fills}
    src = mid_source(session, span, mid_choice)
    t = src.time_of("f")
    params = {**src.params(), "end": src.end, "cap": MAX_FILLS}
    cols, joins = [], [f"LEFT JOIN LATERAL ({src.lateral(t, strict=True)}) m0 ON true"]
    for j, h in enumerate(horizons_s, start=1):
        params[f"h{j}"] = timedelta(seconds=h)
        at = f"({t} + %(h{j})s)"
        cols.append(f"CASE WHEN {at} <= %(end)s THEN m{j}.mid END")
        joins.append(f"LEFT JOIN LATERAL ({src.lateral(at, strict=False)}) m{j} ON true")
    rows = _rows(
        f"""SELECT f.side, f.price, f.size, m0.mid, {", ".join(cols)}
            FROM (SELECT * FROM {FILLS} WHERE session_id = %(sid)s ORDER BY ts, id LIMIT %(cap)s) f
            {" ".join(joins)} ORDER BY f.ts, f.id""",
        params,
    )
    a = np.array([[math.nan if v is None else float(v) for v in r] for r in rows], dtype=float)
    out = analytics.markouts(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4:], horizons_s)
    out.update(
        empty=False,
        mid_source=src.kind,
        n_fills_total=n_fills,
        capped=n_fills > MAX_FILLS,
        cap=MAX_FILLS,
        n_without_mid_before=int(np.isnan(a[:, 3]).sum()),
    )
    return out


# --------------------------------------------------------------------------------------------------
# Public trades (for the implied fill rate and κ)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicTrades:
    """Trades of the instrument over the span with the mid just before each: aggressor (+1/−1/0) and the signed
    distance ``1e4·(price − mid)/mid`` in bps; ``weight`` is k for a 1-in-k sample."""

    aggressor: np.ndarray
    signed_bps: np.ndarray
    n_total: int
    weight: int
    n_without_mid: int


def load_public_trades(session: TradingSession, span: Span, src: MidSource) -> PublicTrades | None:
    """The instrument's public trades in the span (None when none is stored), sampled to :data:`MAX_TRADES`."""
    base = {"inst": session.instrument_id, "a": span.start, "b": span.end}
    where = "t.instrument_id = %(inst)s AND t.ts >= %(a)s AND t.ts <= %(b)s"
    n = _rows(f"SELECT count(*) FROM {TRADES} t WHERE {where}", base)[0][0]
    if n == 0:
        return None
    k = max(1, math.ceil(n / MAX_TRADES))
    rows = _rows(
        f"""SELECT t.aggressor, 1e4 * (t.price - m.mid) / m.mid
            FROM (SELECT * FROM {TRADES} t WHERE {where} AND t.id %% %(k)s = 0 ORDER BY t.ts LIMIT %(cap)s) t
            LEFT JOIN LATERAL ({src.lateral(src.time_of("t"), strict=True)}) m ON true""",
        {**base, **src.params(), "k": k, "cap": MAX_TRADES},
    )
    agg = np.array([r[0] for r in rows], dtype=float)
    dist = np.array([math.nan if r[1] is None else float(r[1]) for r in rows], dtype=float)
    return PublicTrades(agg, dist, int(n), k, int(np.isnan(dist).sum()))


# --------------------------------------------------------------------------------------------------
# Fill rate against quote distance
# --------------------------------------------------------------------------------------------------

_SIDE_NAMES = {1: "bid", -1: "ask"}


def fine_multiple(bin_bps: float) -> int | None:
    """``bin_bps / Q`` when it is a whole number (the aggregates' fine bins then tile the buckets), else None."""
    m = bin_bps / aggregates.FINE_BPS
    return round(m) if round(m) >= 1 and abs(m - round(m)) <= 1e-9 * m else None


def _quote_time_aggregated(
    session: TradingSession, bin_bps: float, n_bins: int, end: datetime
) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Seconds quoted per side and bucket from the fine bins (:mod:`apps.review.decision_aggregates`): fine bin
    ``k`` is bucket ``⌊k / m⌋``, ``m = bin_bps / Q``; the decision still in force adds its stretch to ``end``."""
    m = fine_multiple(bin_bps)
    assert m is not None  # the caller checked
    time_s = {1: np.zeros(n_bins), -1: np.zeros(n_bins)}
    outside_s = {1: 0.0, -1: 0.0}
    state = aggregates.catch_up(session.pk)
    if state is None:
        return time_s, outside_s
    tail = aggregates.open_tail(state)
    rows = [(kind, k, secs) for kind, k, _n, secs, _w in aggregates.value_bins(session.pk, (1, -1))]
    tail_s = (end - tail.ts).total_seconds()
    rows += [(side, tail.bins[side], tail_s) for side in (1, -1) if tail.bins[side] is not None]
    for side, k, secs in rows:
        j = k // m
        if 0 <= j < n_bins:
            time_s[side][j] += secs
        else:
            outside_s[side] += secs
    return time_s, outside_s


def _quote_time_direct(params: dict[str, Any], n_bins: int) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Seconds quoted per side and bucket straight from the decisions (a ``LEAD`` window over all of them): for
    a ``bin_bps`` the fine bins do not tile."""
    time_s = {1: np.zeros(n_bins), -1: np.zeros(n_bins)}
    outside_s = {1: 0.0, -1: 0.0}
    for side, b, secs in _rows(
        f"""WITH d AS (
              SELECT ts, mid, bid_px, ask_px, LEAD(ts, 1, %(end)s) OVER (ORDER BY ts, id) AS next_ts
              FROM {DECISIONS} d WHERE session_id = %(sid)s AND {_DEC_OK}
            ), q AS (
              SELECT 1 AS side, 1e4 * (mid - bid_px) / mid AS dist, next_ts - ts AS dt FROM d
              WHERE bid_px IS NOT NULL AND bid_px <> 'NaN'::float8
              UNION ALL
              SELECT -1, 1e4 * (ask_px - mid) / mid, next_ts - ts FROM d
              WHERE ask_px IS NOT NULL AND ask_px <> 'NaN'::float8
            )
            SELECT side, width_bucket(dist, %(edges)s::float8[]), sum(EXTRACT(EPOCH FROM dt))::float8
            FROM q GROUP BY 1, 2""",
        params,
    ):
        if 1 <= b <= n_bins:
            time_s[side][b - 1] += secs
        else:
            outside_s[side] += secs
    return time_s, outside_s


def load_fill_rate(
    session: TradingSession, bin_bps: float = 1.0, max_bps: float = 20.0, mid_choice: str | None = None
) -> dict[str, Any]:
    """Our fill rate per distance bucket beside the public-trade one (:func:`analytics.fill_rate_curve`), per side.

    Each decision's quote is in force from its ``ts`` to the next decision's (the last one to the end of the span);
    a fill is attributed to the quote of the decision strictly before it (one index probe per fill). Quote time per
    bucket is read from the session's decision aggregates (:mod:`apps.review.decision_aggregates`) when ``bin_bps``
    is a whole number of their fine bins (the default 1 bps is), else computed straight from the decisions.
    """
    edges = analytics.distance_edges_bps(bin_bps, max_bps)
    span = session_span(session)
    if span is None:
        return _empty("no decisions or fills in this session")
    src = mid_source(session, span, mid_choice)
    params = {"sid": session.pk, "edges": [float(e) for e in edges], "end": span.end}
    n_bins = edges.size - 1
    fills = {1: np.zeros(n_bins, dtype=int), -1: np.zeros(n_bins, dtype=int)}
    if fine_multiple(bin_bps) is not None:
        time_s, outside_s = _quote_time_aggregated(session, bin_bps, n_bins, span.end)
    else:
        time_s, outside_s = _quote_time_direct(params, n_bins)
    unattributed = 0
    outside_fills = 0
    for side, b, count in _rows(
        f"""SELECT f.side, width_bucket(CASE WHEN f.side > 0 THEN 1e4 * (d.mid - d.bid_px) / d.mid
                                           ELSE 1e4 * (d.ask_px - d.mid) / d.mid END, %(edges)s::float8[]), count(*)
            FROM {FILLS} f LEFT JOIN LATERAL (
              SELECT d.mid, d.bid_px, d.ask_px FROM {DECISIONS} d WHERE d.session_id = %(sid)s
              AND d.ts < {_LOCAL.format(t="f")} AND {_DEC_OK} ORDER BY d.ts DESC, d.id DESC LIMIT 1
            ) d ON true WHERE f.session_id = %(sid)s GROUP BY 1, 2""",
        params,
    ):
        if b is None:
            unattributed += count
        elif 1 <= b <= n_bins:
            fills[side][b - 1] += count
        else:
            outside_fills += count
    trades = load_public_trades(session, span, src)
    centers = 0.5 * (edges[:-1] + edges[1:])
    sides: dict[str, Any] = {}
    for side, name in _SIDE_NAMES.items():
        reach = None
        if trades is not None:
            # a resting bid is reached by sell-aggressor prints at or below it, an ask by buy-aggressor ones above
            d = -side * trades.signed_bps[(trades.aggressor == -side) & np.isfinite(trades.signed_bps)]
            reach = trades.weight * np.array([(d >= c - 1e-9).sum() for c in centers], dtype=float)
        sides[name] = analytics.fill_rate_curve(edges, time_s[side], fills[side], reach, span.seconds)
        sides[name]["quote_time_outside_s"] = outside_s[side]
    return {
        "empty": False,
        "edges_bps": [float(e) for e in edges],
        "duration_s": span.seconds,
        "mid_source": src.kind,
        "sides": sides,
        "fills_unattributed": int(unattributed),
        "fills_outside": int(outside_fills),
        "public": _trades_meta(trades),
    }


def _trades_meta(trades: PublicTrades | None) -> dict[str, Any]:
    if trades is None:
        return {"stored": False, "message": NO_TRADES}
    return {
        "stored": True,
        "n_total": trades.n_total,
        "n_used": int(trades.signed_bps.size),
        "sample_1_in": trades.weight,
        "cap": MAX_TRADES,
        "n_without_mid": trades.n_without_mid,
    }


# --------------------------------------------------------------------------------------------------
# Spreads
# --------------------------------------------------------------------------------------------------

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def load_spreads(session: TradingSession, n_points: int = 300, n_bins: int = 40) -> dict[str, Any]:
    """Our quoted spread ``1e4·(ask − bid)/mid`` and the market's ``1e4·(best_ask − best_bid)/mid`` (the BBO the
    engine saw at each decision, from its inputs), in bps: a series of at most ``n_points`` buckets of whole seconds
    (mean, min, max per bucket) and time-weighted histograms (each decision weighted by how long it was in force)
    with quantiles read off them.

    All from the session's decision aggregates (:mod:`apps.review.decision_aggregates`): the series from its
    per-second rows (≤ 86,400 a day), the histograms from its fine value bins, each counted at its centre; the
    histogram's range is 1.05 × the larger 99th percentile of the two spreads (per decision), as before."""
    span = session_span(session)
    n_dec = QuoteDecisionRecord.objects.filter(session=session).count()
    if span is None or n_dec == 0:
        return _empty("no decisions in this session")
    state = aggregates.catch_up(session.pk)
    origin = span.start.replace(microsecond=0)
    # whole seconds, so that the per-second rows tile the buckets; (end − origin)/stride < n_points buckets
    stride_s = int((span.end - origin).total_seconds() // n_points) + 1
    series = _rows(
        f"""SELECT extract(epoch FROM date_bin(%(stride)s, second, %(origin)s))::float8 AS b,
                   sum(sum_ours) / NULLIF(sum(n_ours), 0), min(min_ours), max(max_ours),
                   sum(sum_market) / NULLIF(sum(n_market), 0), min(min_market), max(max_market)
            FROM {aggregates.SECONDS} WHERE session_id = %(sid)s GROUP BY 1 ORDER BY 1""",
        {"sid": session.pk, "stride": timedelta(seconds=stride_s), "origin": origin},
    )
    which = {aggregates.KIND_OURS: "ours", aggregates.KIND_MARKET: "market"}
    rows = aggregates.value_bins(session.pk, tuple(which)) if state is not None else []
    bins = {
        w: np.array([(r[1], r[2], r[3], r[4]) for r in rows if r[0] == kind], dtype=float).reshape(-1, 4)
        for kind, w in which.items()
    }
    for kind, w in which.items():  # fine bin → the value it stands for
        bins[w][:, 0] = aggregates.centres(kind, bins[w][:, 0])
    tops = [aggregates.percentile_cont(bins[w][:, 0], bins[w][:, 1], 0.99) for w in ("ours", "market")]
    hi = max([t for t in tops if t is not None], default=0.0)
    edges = np.linspace(0.0, hi * 1.05 if hi > 0 else 1.0, n_bins + 1)
    hist = {"ours": np.zeros(n_bins), "market": np.zeros(n_bins)}
    weighted_sum = {"ours": 0.0, "market": 0.0}
    weight = {"ours": 0.0, "market": 0.0}
    if state is not None:
        tail = aggregates.open_tail(state)
        tail_s = (span.end - tail.ts).total_seconds()
        for kind, w in which.items():
            x = tail.values[kind]
            if x is not None:
                centre = float(aggregates.centres(kind, np.array([tail.bins[kind]]))[0])
                bins[w] = np.vstack([bins[w], [centre, 0, tail_s, x * tail_s]])
    for w in ("ours", "market"):
        centre, secs, wsum = bins[w][:, 0], bins[w][:, 2], bins[w][:, 3]
        weight[w], weighted_sum[w] = float(secs.sum()), float(wsum.sum())
        # PostgreSQL's width_bucket on each fine bin's centre: 0 below the first edge, n_bins + 1 at or above the last
        b = np.searchsorted(edges, centre, side="right")
        # the top 1 % is kept in the last bin so the histogram holds all the time; a crossed spread in the first
        np.add.at(hist[w], np.clip(b, 1, n_bins) - 1, secs)
    centers = 0.5 * (edges[:-1] + edges[1:])

    def col(i: int) -> list[float | None]:
        return [analytics._finite(r[i]) if r[i] is not None else None for r in series]

    dist = {
        w: {
            "seconds": [float(x) for x in hist[w]],
            "time_weighted_mean_bps": weighted_sum[w] / weight[w] if weight[w] > 0 else None,
            "quantiles_bps": dict(
                zip(
                    [f"p{round(q * 100)}" for q in QUANTILES],
                    analytics.weighted_quantiles(centers, hist[w], QUANTILES),
                    strict=True,
                )
            ),
            "seconds_total": weight[w],
        }
        for w in ("ours", "market")
    }
    return {
        "empty": False,
        "n_decisions": n_dec,
        "bucket_s": float(stride_s),
        "series": {
            "t_s": [r[0] for r in series],
            "ours_mean_bps": col(1),
            "ours_min_bps": col(2),
            "ours_max_bps": col(3),
            "market_mean_bps": col(4),
            "market_min_bps": col(5),
            "market_max_bps": col(6),
        },
        "histogram": {"edges_bps": [float(e) for e in edges], "center_bps": [float(c) for c in centers], **dist},
    }


# --------------------------------------------------------------------------------------------------
# κ diagnostics
# --------------------------------------------------------------------------------------------------


def load_kappa(session: TradingSession, mid_choice: str | None = None) -> dict[str, Any]:
    """κ diagnostics (:func:`analytics.kappa_diagnostics`) on the public trades of the session's span, δ =
    |price − mid|/mid with the mid strictly before each trade; plus the engine's own κ snapshots if recorded."""
    span = session_span(session)
    if span is None:
        return _empty("no decisions or fills in this session")
    src = mid_source(session, span, mid_choice)
    trades = load_public_trades(session, span, src)
    if trades is None:
        return {**_empty(NO_TRADES), "public": _trades_meta(None)}
    delta = np.abs(trades.signed_bps[np.isfinite(trades.signed_bps)]) / 1e4
    out = analytics.kappa_diagnostics(delta)
    out.update(empty=out["exponential"] is None, mid_source=src.kind, public=_trades_meta(trades))
    if out["empty"]:
        out["message"] = f"too few trades with a mid before them ({delta.size}) to fit"
    return out
