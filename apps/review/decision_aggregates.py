"""Pre-aggregates of a session's quote decisions for the fill-rate and spreads panels, built in the database.

Why: a full day holds 864,000 decisions (10/s). Both panels need each decision's *duration* (it is in force until
the next one), a ``LEAD`` window over all of them in ``(ts, id)`` order, and that scan alone took 0.4–0.7 s on
plain PostgreSQL before any binning (the endpoints took 1.1 s and 1.5 s). So the decisions are folded, once, into
two small tables (:mod:`apps.review.models`) and the endpoints read those:

* :class:`~apps.review.models.DecisionValueBin` — per quantity (our bid's distance below the mid, our ask's above
  it, our quoted spread, the market's spread; bps of the mid) and per fine bin: how many decisions fell there, the
  seconds they were in force and ``Σ value·seconds``. Distances on a linear grid ``[k·Q, (k+1)·Q)``,
  ``Q =`` :data:`FINE_BPS`, so that any fill-rate bucket width that is a whole number of ``Q`` is tiled exactly;
  spreads on a relative grid ``[(1+ρ)^k, (1+ρ)^(k+1))``, ``ρ =`` :data:`SPREAD_RATIO`, because the spreads
  histogram's buckets scale with the spreads (a one-tick BTCUSDT market spread is 0.017 bps). A few hundred to a few
  thousand rows per session, whatever its length.
* :class:`~apps.review.models.DecisionSecond` — per whole second: count, sum, min and max of our spread and of the
  market's; at most 86,400 rows a day.

Building is lazy and incremental (:func:`catch_up`, called by the readers): under a per-session advisory lock, the
decisions after the last one folded in (the ``DecisionAggregateState`` watermark) are read with the watermark
decision itself, whose open interval they close, and added with ``INSERT … ON CONFLICT DO UPDATE``. A session
recorded before this table existed is built on its first read (a full day: one pass, 3–4 s, once); a running
session's reads fold only what was recorded since the previous read. The recorder is left alone: it writes through
a batched, journaled writer whose hot path should not touch review tables, and folding on read costs only the new
rows. Decisions are appended in time order by every writer; one stored later with an earlier time than the
watermark (found by a cheap check on ids above the watermark's) makes the session's aggregates rebuild.

The decision still in force at the end (the watermark) has no closed interval yet: readers add its stretch up to
the end of the session's span themselves (:func:`open_tail`). What the fine bins change, documented in
docs/review-analytics.md: a distance within float rounding of a fill-rate bucket edge may land in the neighbouring
bucket; a spread within ρ/2 of a histogram edge may too (each fine bin is counted at its centre), and the 99th
percentile that sets the histogram's range is read to ρ. Durations, counts, sums, means, minima and maxima are
exact.
"""

# ruff: noqa: S608 - the SQL is assembled from this module's fixed table names and fragments; values are parameters
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.db import connection, transaction

from apps.review.models import DecisionAggregateState, DecisionSecond, DecisionValueBin
from apps.trading.models import QuoteDecisionRecord

FINE_BPS = 0.01  # Q: the width of a fine distance bin (our bid's and ask's distance from the mid), bps of the mid
SPREAD_RATIO = 1e-3  # ρ: a fine spread bin is [(1+ρ)^k, (1+ρ)^(k+1)) bps, its centre within ρ/2 of any value in it
SPREAD_NONPOSITIVE_K = -(2**62)  # the one fine spread bin of zero and crossed (negative) spreads, centred on 0
KIND_BID, KIND_ASK, KIND_OURS, KIND_MARKET = 1, -1, 2, 3
_LOCK_CLASS = 18_018  # first key of pg_advisory_xact_lock(int, int); the second is the session id

DECISIONS = QuoteDecisionRecord._meta.db_table
STATE = DecisionAggregateState._meta.db_table
BINS = DecisionValueBin._meta.db_table
SECONDS = DecisionSecond._meta.db_table

_DEC_OK = "d.mid > 0 AND d.mid <> 'NaN'::float8"  # the analytics' valid decision (NaN sorts above every number)
_PX_OK = "{c} IS NOT NULL AND {c} <> 'NaN'::float8"
# the four quantities of one decision row ``d``, bps of its mid (NULL where the decision has none)
_BID = f"CASE WHEN {_PX_OK.format(c='d.bid_px')} THEN 1e4 * (d.mid - d.bid_px) / d.mid END"
_ASK = f"CASE WHEN {_PX_OK.format(c='d.ask_px')} THEN 1e4 * (d.ask_px - d.mid) / d.mid END"
_OURS = (
    f"CASE WHEN {_PX_OK.format(c='d.bid_px')} AND {_PX_OK.format(c='d.ask_px')}"
    " THEN 1e4 * (d.ask_px - d.bid_px) / d.mid END"
)
_MARKET = "1e4 * ((d.inputs->>'best_ask')::float8 - (d.inputs->>'best_bid')::float8) / d.mid"
_FINITE = "{x} IS NOT NULL AND {x} NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8)"
# the fine bin of a value, clamped so that an absurd value cannot overflow bigint
_K_DIST = "floor(LEAST(GREATEST({x} / %(q)s, -1e15), 1e15))::bigint"
# spreads on a relative grid: the histogram's buckets scale with the spreads (1/40 of 1.05 × their 99th percentile),
# so a fixed width would be too coarse for a one-tick BTCUSDT market spread (0.017 bps) or needlessly fine for 20 bps
_K_SPREAD = f"CASE WHEN {{x}} > 0 THEN floor(ln({{x}}) / ln(1 + %(rho)s))::bigint ELSE {SPREAD_NONPOSITIVE_K} END"


def _k(kind: str, x: str) -> str:
    """SQL for the fine bin of value ``x`` of quantity ``kind`` (an SQL expression or a constant)."""
    return f"CASE WHEN {kind} IN ({KIND_BID}, {KIND_ASK}) THEN {_K_DIST.format(x=x)} ELSE {_K_SPREAD.format(x=x)} END"


def centres(kind: int, k: np.ndarray) -> np.ndarray:
    """The value each fine bin ``k`` of quantity ``kind`` stands for (bps): its middle (geometric for spreads)."""
    k = np.asarray(k, dtype=float)
    if kind in (KIND_BID, KIND_ASK):
        return (k + 0.5) * FINE_BPS
    return np.where(k == SPREAD_NONPOSITIVE_K, 0.0, (1 + SPREAD_RATIO) ** (k + 0.5))


_FOLD = f"""
WITH w AS MATERIALIZED (
  SELECT d.id, d.ts, {_BID} AS bid, {_ASK} AS ask, {_OURS} AS ours, {_MARKET} AS market,
         LEAD(d.ts) OVER (ORDER BY d.ts, d.id) - d.ts AS dt,
         (d.ts, d.id) > (%(last_ts)s, %(last_id)s) AS is_new
  FROM {DECISIONS} d
  WHERE d.session_id = %(sid)s AND {_DEC_OK} AND d.ts >= %(last_ts)s AND (d.ts, d.id) >= (%(last_ts)s, %(last_id)s)
), v AS (
  SELECT q.kind, q.x, w.dt, w.is_new
  FROM w CROSS JOIN LATERAL (VALUES ({KIND_BID}, w.bid), ({KIND_ASK}, w.ask), ({KIND_OURS}, w.ours),
                                    ({KIND_MARKET}, w.market)) q(kind, x)
  WHERE {_FINITE.format(x="q.x")}
), b AS (
  SELECT kind, {_k("kind", "x")} AS k, count(*) FILTER (WHERE is_new) AS n,
         COALESCE(EXTRACT(EPOCH FROM sum(dt))::float8, 0) AS secs,
         COALESCE(sum(x * date_part('epoch', dt)), 0) AS wsum
  FROM v GROUP BY 1, 2
), ins_b AS (
  INSERT INTO {BINS} AS t (session_id, kind, k, n, seconds, weighted_sum)
  SELECT %(sid)s, kind, k, n, secs, wsum FROM b
  ON CONFLICT (session_id, kind, k) DO UPDATE SET n = t.n + EXCLUDED.n, seconds = t.seconds + EXCLUDED.seconds,
    weighted_sum = t.weighted_sum + EXCLUDED.weighted_sum
), s AS (
  SELECT date_trunc('second', ts) AS sec, count(ours) AS no, sum(ours) AS so, min(ours) AS io, max(ours) AS xo,
         count(market) AS nm, sum(market) AS sm, min(market) AS im, max(market) AS xm
  FROM w WHERE is_new GROUP BY 1
), ins_s AS (
  INSERT INTO {SECONDS} AS t (session_id, second, n_ours, sum_ours, min_ours, max_ours, n_market, sum_market,
                              min_market, max_market)
  SELECT %(sid)s, sec, no, so, io, xo, nm, sm, im, xm FROM s
  ON CONFLICT (session_id, second) DO UPDATE SET
    n_ours = t.n_ours + EXCLUDED.n_ours,
    sum_ours = CASE WHEN t.n_ours = 0 THEN EXCLUDED.sum_ours WHEN EXCLUDED.n_ours = 0 THEN t.sum_ours
                    ELSE t.sum_ours + EXCLUDED.sum_ours END,
    min_ours = LEAST(t.min_ours, EXCLUDED.min_ours), max_ours = GREATEST(t.max_ours, EXCLUDED.max_ours),
    n_market = t.n_market + EXCLUDED.n_market,
    sum_market = CASE WHEN t.n_market = 0 THEN EXCLUDED.sum_market WHEN EXCLUDED.n_market = 0 THEN t.sum_market
                      ELSE t.sum_market + EXCLUDED.sum_market END,
    min_market = LEAST(t.min_market, EXCLUDED.min_market), max_market = GREATEST(t.max_market, EXCLUDED.max_market)
)
SELECT (SELECT count(*) FROM w WHERE is_new), l.ts, l.id
FROM (SELECT w.ts, w.id FROM w ORDER BY w.ts DESC, w.id DESC LIMIT 1) l
"""

_GRID = {"q": FINE_BPS, "rho": SPREAD_RATIO}
_NEVER = datetime.fromisoformat("0001-01-01T00:00:00+00:00")  # a watermark before any decision


def _one(sql: str, params: dict[str, Any]) -> tuple:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def _all(sql: str, params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def catch_up(session_id: int) -> DecisionAggregateState | None:
    """Fold the session's decisions recorded since the last call into its aggregates; the state after it (None if
    the session has no valid decision). Serialised per session by an advisory lock held to the end of the
    transaction, so concurrent readers fold each decision once."""
    with transaction.atomic():
        # the (int, int) form: a session id past 2³¹ shares a lock with another one, which only serialises them
        _one("SELECT pg_advisory_xact_lock(%(c)s, %(key)s)", {"c": _LOCK_CLASS, "key": session_id % 2**31})
        state = DecisionAggregateState.objects.filter(session_id=session_id).first()
        if state is not None:
            (earlier,) = _one(
                f"""SELECT EXISTS (SELECT 1 FROM {DECISIONS} d WHERE d.id > %(last_id)s AND d.session_id = %(sid)s
                                   AND d.ts < %(last_ts)s AND {_DEC_OK})""",
                {"sid": session_id, "last_id": state.last_id, "last_ts": state.last_ts},
            )
            if earlier:  # stored out of time order: the folded intervals are wrong, start again
                DecisionValueBin.objects.filter(session_id=session_id).delete()
                DecisionSecond.objects.filter(session_id=session_id).delete()
                state.delete()
                state = None
        last_ts, last_id = (state.last_ts, state.last_id) if state is not None else (_NEVER, 0)
        row = _one(_FOLD, {"sid": session_id, "last_ts": last_ts, "last_id": last_id, **_GRID})
        if row is None or row[0] == 0:  # no valid decision at all, or none since the watermark
            return state
        n_new, new_ts, new_id = row
        if state is None:
            state = DecisionAggregateState(session_id=session_id, last_ts=new_ts, last_id=new_id, n_decisions=n_new)
        else:
            state.last_ts, state.last_id, state.n_decisions = new_ts, new_id, state.n_decisions + n_new
        state.save()
        return state


@dataclass(frozen=True)
class OpenTail:
    """The decision still in force at the end (the watermark): when it started and its four quantities (None where
    the decision has none), with their fine bins."""

    ts: datetime
    values: dict[int, float | None]
    bins: dict[int, int | None]


def open_tail(state: DecisionAggregateState) -> OpenTail:
    """The watermark decision's quantities, computed with the same SQL as the fold (one primary-key read)."""
    kinds = (KIND_BID, KIND_ASK, KIND_OURS, KIND_MARKET)
    exprs = (_BID, _ASK, _OURS, _MARKET)
    cols = []
    for kind, x in zip(kinds, exprs, strict=True):
        cols += [
            f"CASE WHEN {_FINITE.format(x=f'({x})')} THEN {x} END",
            f"CASE WHEN {_FINITE.format(x=f'({x})')} THEN {_k(str(kind), f'({x})')} END",
        ]
    row = _one(f"SELECT {', '.join(cols)} FROM {DECISIONS} d WHERE d.id = %(id)s", {"id": state.last_id, **_GRID})
    return OpenTail(
        state.last_ts,
        {kind: row[2 * i] for i, kind in enumerate(kinds)},
        {kind: row[2 * i + 1] for i, kind in enumerate(kinds)},
    )


def value_bins(session_id: int, kinds: tuple[int, ...]) -> list[tuple[int, int, int, float, float]]:
    """``(kind, k, n, seconds, weighted_sum)`` of the session's fine bins of those quantities."""
    return _all(
        f"SELECT kind, k, n, seconds, weighted_sum FROM {BINS} WHERE session_id = %(sid)s AND kind = ANY(%(kinds)s)",
        {"sid": session_id, "kinds": list(kinds)},
    )


def percentile_cont(values: np.ndarray, n: np.ndarray, q: float) -> float | None:
    """PostgreSQL's ``percentile_cont(q)`` of fine bins counted ``n`` times each, every value taken at its bin's
    centre ``values``: the interpolation between the values of rank ``⌊q·(N−1)⌋`` and ``⌈q·(N−1)⌉`` (0-based) of
    the sorted values."""
    keep = n > 0
    values, n = values[keep], n[keep]
    total = int(n.sum())
    if total == 0:
        return None
    order = np.argsort(values)
    centres = values[order]
    cum = np.cumsum(n[order])
    pos = q * (total - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    v_lo = float(centres[int(np.searchsorted(cum, lo, side="right"))])
    v_hi = float(centres[int(np.searchsorted(cum, hi, side="right"))])
    return v_lo + (pos - lo) * (v_hi - v_lo)


# statuses in which a session may still be recording decisions
_LIVE_STATUSES = ("created", "running", "paused", "reducing", "halted")


def fold_recent(ended_within_s: float = 600.0) -> dict[int, int]:
    """Fold the new decisions of every session that may still be recording (any live status) or that ended within
    ``ended_within_s`` seconds (a backtest, or a session just stopped), so that the analytics panels find their
    aggregates built when they are first opened instead of building a whole day on that read. The readers still
    call :func:`catch_up` themselves: this only keeps the work off the request path. Returns ``{session id: number
    of decisions folded so far}`` for the sessions it visited."""
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    from apps.trading.models import TradingSession

    since = timezone.now() - timedelta(seconds=ended_within_s)
    ids = TradingSession.objects.filter(Q(status__in=_LIVE_STATUSES) | Q(ended_at__gte=since)).values_list(
        "pk", flat=True
    )
    out: dict[int, int] = {}
    for sid in ids:
        state = catch_up(sid)
        out[sid] = state.n_decisions if state is not None else 0
    return out
