"""The best a passive quote could do on each shared recording's evaluated part, read off the public tape (issue 16).

    python tools/tape_edge.py [--horizon-s 1] [--min-events 30]

Issue 16 asks, on every recording's evaluated part, that our spread capture (valued at the mid in force just before
the fill) exceed the 1 s adverse selection (the mid's move from there over 1 s). Summed, the two are the fill's
1 s markout from its own price, so the target asks for maker fills that are profitable at 1 s before rebates.

This tool asks whether *any* passive quote could do that on the tape. Every market trade is a maker fill on the side
it hit; the prints of one taker order (one exchange time, one aggressor) are one sweep, one event, reaching its
deepest price (as ``apps/engine/estimators/depth_markout.py`` counts them). With ``m0`` the mid in force just before
the event (local time, from the top-of-book stream), a quote resting at depth δ from ``m0`` on the maker's side is
reached by the events with depth ``d = s·(m0 − p)/m0 ≥ δ`` (``s`` = +1 for a maker buy, ``p`` the deepest price) and
earns, per fill, ``δ + s·(m(t + h) − m0)/m0``: its spread capture δ plus the (usually negative) move of the mid. The
table gives, per depth, the events that reach it, the mean move and that mean edge, and the depth where the edge is
largest.

This is an upper bound for a quote of one size in a real queue: the quote is priced from the very mid in force at
the fill (a real one is priced from an older mid, which ``docs/quote-quality.md`` measured to cost more), and every
event reaching δ fills it (a queue fills only on the events that eat through it, which come with larger moves). If
the largest mean edge is negative at every depth with enough events, no passive strategy meets that target on the
recording, whatever its model. The evaluated part is the one ``manage.py evaluate`` uses (the span cut at the last
book event, split at ``fit_fraction``).
"""

from __future__ import annotations

import argparse
import bisect
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.engine.market.events import BestBidAsk, Trade
from apps.engine.simulation.evaluate import EvaluationConfig, cut_to_book, walk_forward_split
from apps.marketdata.recordings import EVALUATION_RECORDINGS, load_recording

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEPTHS_BPS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
_NS = 1_000_000_000


def sweeps(events) -> list[tuple[int, int, float]]:
    """``(ts_local_ns, maker side s, deepest price)`` per event: the consecutive prints of one taker order (one
    exchange time, one aggressor), at its first print's local time. Prints that are not market trades
    (``Trade.market`` False: insurance fund, ADL) fill no resting quote and are skipped."""
    out: list[tuple[int, int, float]] = []
    key = None
    for e in events:
        if type(e) is not Trade or not e.market:
            continue
        s = -int(e.aggressor)
        k = e.order_key
        if out and k == key:
            deeper = min(out[-1][2], e.price) if s > 0 else max(out[-1][2], e.price)
            out[-1] = (out[-1][0], s, deeper)
        else:
            out.append((e.ts_local_ns, s, e.price))
        key = k
    return out


def edges(events, split_ns: int, horizon_s: float) -> tuple[list[float], list[float]]:
    """(depth, mid move) in bps, both signed for the maker, for every event after ``split_ns`` with both mids."""
    ts = [e.ts_local_ns for e in events if type(e) is BestBidAsk]
    mids = [0.5 * (e.bid_px + e.ask_px) for e in events if type(e) is BestBidAsk]
    h = int(horizon_s * _NS)
    depth: list[float] = []
    move: list[float] = []
    for t, s, p in sweeps(events):
        if t < split_ns:
            continue
        i = bisect.bisect_left(ts, t)  # the mid in force just before t
        j = bisect.bisect_right(ts, t + h)  # the mid in force at t + h
        if i == 0 or j == 0 or ts[-1] < t + h:
            continue
        m0, m1 = mids[i - 1], mids[j - 1]
        depth.append(s * (m0 - p) / m0 * 1e4)
        move.append(s * (m1 - m0) / m0 * 1e4)
    return depth, move


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--horizon-s", type=float, default=1.0)
    ap.add_argument("--min-events", type=int, default=30, help="depths reached by fewer events are not ranked")
    ap.add_argument("--data-dir", type=Path, default=DATA)
    args = ap.parse_args(argv)
    fit_fraction = EvaluationConfig().fit_fraction
    print(
        f"# evaluated part = after the first {fit_fraction:.0%} of the span cut at the last book event; "
        f"horizon {args.horizon_s:g} s; bps of the mid; edge = depth + mean move (before any rebate)"
    )
    for name, rec in sorted(EVALUATION_RECORDINGS.items()):
        if any(not (args.data_dir / f).exists() for f in rec.files):
            print(f"\n{name}: skipped, missing files")
            continue
        events, _ = cut_to_book(load_recording(args.data_dir, rec))
        _, split_ns = walk_forward_split(events, fit_fraction)
        depth, move = edges(events, split_ns, args.horizon_s)
        print(f"\n{name}: {len(depth):,} trade events in the evaluated part")
        print(f"{'depth ≥':>8} {'events':>8} {'mean move':>10} {'± 2 s.e.':>9} {'edge':>8}")
        best = None
        for delta in DEPTHS_BPS:
            m = [mv for d, mv in zip(depth, move, strict=True) if d >= delta]
            if len(m) < 2:
                print(f"{delta:>8.2f} {len(m):>8}")
                continue
            mean = statistics.fmean(m)
            se = statistics.stdev(m) / math.sqrt(len(m))
            edge = delta + mean
            print(f"{delta:>8.2f} {len(m):>8,} {mean:>10.3f} {2 * se:>9.3f} {edge:>8.3f}")
            if len(m) >= args.min_events and (best is None or edge > best[1]):
                best = (delta, edge, 2 * se, len(m))
        if best is None:
            print("no depth reached by enough events")
        else:
            d, e, ci, n = best
            verdict = (
                "a passive quote can earn it"
                if e - ci > 0
                else ("no depth pays before rebates" if e + ci < 0 else "not distinguishable from zero")
            )
            print(f"largest mean edge: {e:+.3f} ± {ci:.3f} bps at depth ≥ {d:g} bps ({n:,} events): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
