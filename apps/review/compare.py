"""Two sessions side by side: their span, result by part, fills, spreads and how their parameters differ.

The charts share one time axis. When the sessions' recorded spans overlap (two parameter sets run live at the same
time, or two backtests over the same data) the axis is absolute UTC time; when they do not, each is drawn against
its elapsed time since its own first event, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection

from apps.review.queries import Span, page_summary, session_span

ABSOLUTE, ELAPSED = "absolute", "elapsed"

_STATS = """
SELECT (SELECT count(*) FROM trading_fillrecord WHERE session_id = %(sid)s),
       (SELECT coalesce(sum(size), 0) FROM trading_fillrecord WHERE session_id = %(sid)s),
       (SELECT coalesce(sum(price * size), 0) FROM trading_fillrecord WHERE session_id = %(sid)s),
       (SELECT coalesce(sum(fee), 0) FROM trading_fillrecord WHERE session_id = %(sid)s),
       (SELECT avg((ask_px - bid_px) / mid) * 1e4 FROM trading_quotedecisionrecord
          WHERE session_id = %(sid)s AND bid_px IS NOT NULL AND ask_px IS NOT NULL AND mid > 0),
       (SELECT count(*) FROM trading_quotedecisionrecord WHERE session_id = %(sid)s)
"""


@dataclass(frozen=True, slots=True)
class Side:
    session: Any
    span: Span
    result: dict[str, Any]
    n_fills: int
    volume: float
    notional: float
    fees: float
    spread_bps: float | None
    n_decisions: int


def side(session: Any) -> Side:
    with connection.cursor() as cur:
        cur.execute(_STATS, {"sid": session.pk})
        n_fills, volume, notional, fees, spread_bps, n_dec = cur.fetchone()
    return Side(
        session, session_span(session), page_summary(session), n_fills, volume, notional, fees, spread_bps, n_dec
    )


def flatten(params: Any, prefix: str = "") -> dict[str, Any]:
    """``{"strategy": {"gamma": 0.1}}`` -> ``{"strategy.gamma": 0.1}``."""
    if not isinstance(params, dict):
        return {prefix: params} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


_MISSING = object()


def params_diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The dotted parameters whose values differ (absent on one side shows as None), sorted by name."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for key in sorted(fa.keys() | fb.keys()):
        va, vb = fa.get(key, _MISSING), fb.get(key, _MISSING)
        if va != vb:
            out.append((key, None if va is _MISSING else va, None if vb is _MISSING else vb))
    return out


def alignment(a: Span, b: Span) -> str:
    """Absolute time when the recorded spans overlap, else elapsed time since each session's start."""
    if a.recorded and b.recorded and a.start_ns <= b.end_ns and b.start_ns <= a.end_ns:
        return ABSOLUTE
    return ELAPSED


def compare(a: Any, b: Any) -> dict[str, Any]:
    sa, sb = side(a), side(b)
    align = alignment(sa.span, sb.span)
    if align == ABSOLUTE:
        window = (min(sa.span.start_ns, sb.span.start_ns), max(sa.span.end_ns, sb.span.end_ns))
        windows = (window, window)
    else:
        windows = ((sa.span.start_ns, sa.span.end_ns), (sb.span.start_ns, sb.span.end_ns))
    return {
        "a": sa,
        "b": sb,
        "alignment": align,
        "windows": windows,
        "params_diff": params_diff(a.params, b.params),
    }
