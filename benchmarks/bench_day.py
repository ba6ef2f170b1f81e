"""Issue 15: a day of BTCUSDT USD-M through the backtest, streamed, with its peak RSS and whether RSS grows.

    python -m benchmarks day [--hours 24] [--keep-decisions]      # the full day: ~10-40 min
    python -m benchmarks.bench_day --hours 24 [--keep-decisions]  # the same, printing the rows

The market is the shared USD-M recording repeated and re-stamped (:mod:`benchmarks.daystream`): ``--hours`` of
market time, rounded up to whole copies of 344.804 s (24 h = 251 copies, 23.6 M messages); nothing but one parsed
copy is ever held. The backtest is the one ``make bench-anchor`` times (:func:`benchmarks.anchor.ours.make_loop`):
:class:`~apps.engine.simulation.backtest.EngineLoop` with the GLFT ``StrategyCore``, the paper venue (full L2
book, risk-averse queue, 10 ms latency each way), the session's default risk rules and the P&L ledger; no sink,
so no database writes. By default decisions are not kept in memory (``BacktestConfig(keep_decisions=False)``, as
``apps.trading.backtest`` runs a session); ``--keep-decisions`` keeps every changed decision (the
``BacktestConfig`` default, which ``bench_backtest`` uses) to measure what that costs.

The run is a child process, so its ``ru_maxrss`` is the backtest's own peak (plus the one parsed copy). At 1 %,
10 %, 50 % and 100 % of the day's messages the child notes its RSS (current, from ``/proc/self/statm``, and the
peak so far), the time, and the length of every list, dict, set and deque reachable from the loop (the result,
ledger, strategy, venue and risk rules, walked a few levels deep): a container that keeps growing is what RSS
grows with, and its bytes per item (deep size of its last items) times its growth is reported.

Rates are hftbacktest rows per second (docs/bench-anchor.md's unit: 491,973 rows per copy; bookTicker counts 0)
and our messages per second. The stream's own cost (re-stamping: a new event object per message) is inside the
timed loop; it is measured apart on one copy and printed, so a reader can take it out.

In ``make bench`` (``python -m benchmarks``) this module runs with ``hours=1`` (11 copies, ~1 min); the full
day only when asked (``--hours 24``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
CHECKPOINTS = (0.01, 0.10, 0.50, 1.0)
RSS_TARGET_MB = 1024.0
DEFAULT_HOURS = 1.0  # make bench; the full day with --hours 24
_PAGE = os.sysconf("SC_PAGE_SIZE")
_CONTAINERS = (list, dict, set, frozenset)


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# --- what grows -------------------------------------------------------------------------------------------
def _walk(obj: Any, path: str, depth: int, seen: set[int], out: dict[str, Any]) -> None:
    """Every container reachable from ``obj`` through attributes of our own (``apps.*``/``benchmarks.*``)
    objects, by attribute path; containers are not descended into (their items are the growth)."""
    from collections import deque

    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (*_CONTAINERS, deque)):
        out[path] = obj
        return
    if depth == 0 or not type(obj).__module__.startswith(("apps.", "benchmarks.")):
        return
    names: list[str] = []
    for cls in type(obj).__mro__:
        names += _slot_names(cls)
    names += list(getattr(obj, "__dict__", {}))
    for name in dict.fromkeys(names):
        try:
            value = getattr(obj, name)
        except AttributeError:
            continue
        if callable(value) and not isinstance(value, (*_CONTAINERS, deque)):
            continue
        _walk(value, f"{path}.{name}", depth - 1, seen, out)


def _slot_names(cls: type) -> list[str]:
    """Attributes stored in ``cls``'s instance layout, not its ``__dict__``: ``__slots__`` and the typed fields of a
    compiled (Cython ``cdef public``) class, e.g. the paper venue's ``_live`` and the driver's ``result``."""
    import types

    names = [n for n in getattr(cls, "__slots__", ()) if isinstance(n, str)]
    descriptors = (types.GetSetDescriptorType, types.MemberDescriptorType)
    names += [
        n
        for n, v in vars(cls).items()
        if isinstance(v, descriptors) and n not in ("__dict__", "__weakref__") and n not in names
    ]
    return names


def containers(loop: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _walk(loop, "loop", 5, set(), out)
    return out


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it holds that is not shared with the interpreter (enum members, small
    ints, interned strings and classes are not counted), roughly what freeing it would give back."""
    import enum

    seen = set() if seen is None else seen
    if id(obj) in seen or obj is None or isinstance(obj, (bool, enum.Enum, type)):
        return 0
    if isinstance(obj, int) and -5 <= obj <= 256:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
        size += sum(deep_size(x, seen) for x in obj)
    elif not isinstance(obj, (str, bytes, int, float)):
        for cls in type(obj).__mro__:
            for n in _slot_names(cls):
                if hasattr(obj, n):
                    size += deep_size(getattr(obj, n), seen)
        if hasattr(obj, "__dict__"):
            size += deep_size(obj.__dict__, seen)
    return size


def _per_item_bytes(c: Any, seen: set[int], sample: int = 200) -> float:
    """Deep bytes per item of the last ``sample`` items of ``c``, not counting what ``seen`` already holds."""
    if len(c) == 0:
        return 0.0
    items = list(c.items())[-sample:] if isinstance(c, dict) else list(c)[-sample:]
    return (sum(deep_size(x, seen) for x in items) + 8 * len(items)) / len(items)


# --- the child: one streamed run ----------------------------------------------------------------------------
def _measure_stream(rec: Any, k: int = 1) -> float:
    """Seconds per message of generating re-stamped copy ``k`` alone (no backtest)."""
    from benchmarks.daystream import copy_events

    t0 = time.perf_counter()
    n = 0
    for _ in copy_events(rec, k):
        n += 1
    return (time.perf_counter() - t0) / n


def check_stream(rec: Any, copies: int = 3) -> dict[str, int]:
    """The re-stamped stream is a valid feed, or AssertionError at the first violation: local time never goes back;
    from the second copy on, each copy starts with its snapshot, whose ``lastUpdateId`` is above every id before it,
    its first diff spans that id (``U <= lastUpdateId <= u``) and every later diff chains (``pu`` = the previous
    ``u``); trade ids increase; no trade or book ticker is stamped (exchange time) before the previous copy's last.
    Copy 0 is the recording as it is (its snapshot arrives after two diffs it does not contain; quirk 2)."""
    from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Trade
    from benchmarks.daystream import day_stream

    last_local = last_u = last_tid = snap_id = 0
    snapshots = diffs_chained = 0
    synced = False
    last_exch = {Trade: 0, BestBidAsk: 0}
    floor_exch = {Trade: 0, BestBidAsk: 0}
    n = 0
    for e in day_stream(rec, copies):
        n += 1
        cls = type(e)
        assert e.ts_local_ns >= last_local, f"event {n}: local time goes back"
        last_local = e.ts_local_ns
        if cls is DepthSnapshot:
            snapshots += 1
            if snapshots >= 2:
                assert e.last_update_id > last_u, f"event {n}: snapshot id {e.last_update_id} <= last u {last_u}"
                floor_exch = dict(last_exch)
            snap_id, synced = e.last_update_id, False
        elif cls is DepthUpdate:
            if snapshots >= 2:
                if not synced:
                    assert e.first_update_id <= snap_id <= e.last_update_id, (
                        f"event {n}: first diff misses the snapshot"
                    )
                    synced = True
                else:
                    assert e.prev_update_id == last_u, f"event {n}: pu {e.prev_update_id} != previous u {last_u}"
                diffs_chained += 1
            last_u = e.last_update_id
        elif cls is Trade:
            tid = int(e.trade_id)
            assert tid > last_tid, f"event {n}: trade id {tid} not above {last_tid}"
            last_tid = tid
        if cls in last_exch:
            assert e.ts_exch_ns > floor_exch[cls], f"event {n}: exchange time before the previous copy's last"
            last_exch[cls] = max(last_exch[cls], e.ts_exch_ns)
    assert n == rec.events_in(copies), f"{n} events, expected {rec.events_in(copies)}"
    assert snapshots == copies, f"{snapshots} snapshots in {copies} copies"
    return {"events": n, "copies": copies, "diffs_chained": diffs_chained}


def child(hours: float, keep_decisions: bool) -> dict[str, Any]:
    from benchmarks.anchor.ours import make_loop
    from benchmarks.daystream import DATA, HFT_ROWS_PER_COPY, day_stream, load, require_compiled

    rss_start = _rss_now_mb()
    rec = load(DATA)
    hot_path = require_compiled()
    copies = rec.copies_for_hours(hours)
    total = rec.events_in(copies)
    checked = check_stream(rec, min(3, copies))
    stream_s = _measure_stream(rec)
    rss_loaded = _rss_now_mb()
    loop = make_loop(keep_decisions=keep_decisions)
    marks = sorted({max(1, min(total, round(f * total))) for f in CHECKPOINTS})
    points: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def fed() -> Any:
        nxt = iter(marks)
        at = next(nxt)
        for n, ev in enumerate(day_stream(rec, copies), 1):
            yield ev
            if n == at:
                # the generator resumes once on_market(ev) returned: ``n`` messages are through the loop
                t_probe = time.perf_counter()
                cs = containers(loop)
                points.append(
                    {
                        "events": n,
                        "share": n / total,
                        "wall_s": t_probe - t0 - sum(p["probe_s"] for p in points),
                        "rss_mb": _rss_now_mb(),
                        "peak_mb": _rss_peak_mb(),
                        "lengths": {k: len(v) for k, v in cs.items()},
                    }
                )
                at = next(nxt, -1)
                points[-1]["probe_s"] = time.perf_counter() - t_probe

    result = loop.run(fed())
    peak_run = _rss_peak_mb()  # before the walk below and the summary allocate anything
    probe_s = sum(p["probe_s"] for p in points)
    wall = time.perf_counter() - t0 - probe_s  # the checkpoints' own walks are not the backtest's time
    final = containers(loop)
    growth = []
    # growth from the 10 % point on (the estimators' windows fill during the first minutes of data); an object held
    # by two containers (the client order id keying the tracker's and the venue's orders) is counted once, in the
    # one walked first
    base = points[min(1, len(points) - 1)]["lengths"]
    seen: set[int] = set()
    for path, c in final.items():
        grew = len(c) - base.get(path, 0)
        if grew > 0:
            per = _per_item_bytes(c, seen)
            growth.append(
                {
                    "path": path,
                    "len": len(c),
                    "grew": grew,
                    "lengths": [p["lengths"].get(path, 0) for p in points],
                    "bytes_per_item": per,
                    "mb": per * len(c) / 2**20,
                }
            )
    growth.sort(key=lambda g: -g["mb"])
    summary = result.summary()
    return {
        "hours": hours,
        "copies": copies,
        "market_hours": copies * rec.period_ns / 3600e9,
        "messages": total,
        "restamped": total - rec.messages,  # copy 0 is the parsed events themselves
        "hft_rows": copies * HFT_ROWS_PER_COPY,
        "keep_decisions": keep_decisions,
        "hot_path": hot_path,
        "wall_s": wall,
        "stream_us_per_msg": stream_s * 1e6,
        "parse_s": rec.parse_s,
        "rss_start_mb": rss_start,
        "rss_loaded_mb": rss_loaded,
        "peak_mb": peak_run,
        "peak_exit_mb": _rss_peak_mb(),
        "points": [{k: v for k, v in p.items() if k != "lengths"} for p in points],
        "growth": growth,
        "checked": checked,
        "result": {
            "decisions": result.stats.decisions,
            "fills": len(result.fills),
            "pnl": summary["pnl_total"],
            "final_inventory": summary["final_inventory"],
            "risk_trips": dict(Counter(t.rule for t in result.risk_events)),
            "risk_cleared": len(result.risk_cleared),
            "events_processed": result.stats.market_events,
            "probe_s": probe_s,
        },
    }


# --- the parent ----------------------------------------------------------------------------------------------
def measure(hours: float = DEFAULT_HOURS, keep_decisions: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_day", "--child", "--hours", str(hours)]
    if keep_decisions:
        cmd.append("--keep-decisions")
    proc = subprocess.run(cmd, cwd=BASE_DIR, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_day child failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows_of(r: dict[str, Any]) -> list[dict[str, Any]]:
    wall = r["wall_s"]
    tag = f"{r['market_hours']:.2f} h" + (", decisions kept" if r["keep_decisions"] else "")
    stream_s = r["stream_us_per_msg"] * r["restamped"] / 1e6
    rows = [
        {
            "name": f"day backtest ({tag}) rows/s",
            "value": r["hft_rows"] / wall,
            "unit": "rows/s",
            "note": f"{r['hft_rows']:,} hftbacktest rows, copies: {r['copies']}, {wall:.0f} s incl. the stream "
            f"({stream_s:.0f} s of it re-stamping)",
        },
        {
            "name": f"day backtest ({tag}) messages/s",
            "value": r["messages"] / wall,
            "unit": "msgs/s",
            "note": f"{r['messages']:,} messages (bookTicker included); "
            f"{r['messages'] / max(wall - stream_s, 1e-9):,.0f}/s without re-stamping",
        },
        {
            "name": f"day backtest ({tag}) peak RSS",
            "value": r["peak_mb"],
            "unit": "MB",
            "target": f"< {RSS_TARGET_MB:,.0f} MB",
            "note": f"child's ru_maxrss when the run returned ({r['peak_exit_mb']:.0f} MB after the summary and the "
            f"walk below); {r['rss_loaded_mb']:.0f} MB with one parsed copy loaded; "
            f"book {r['hot_path']}",
        },
    ]
    for p in r["points"]:
        rows.append(
            {
                "name": f"day backtest ({tag}) RSS at {p['share']:.0%}",
                "value": p["rss_mb"],
                "unit": "MB",
                "note": f"{p['events']:,} messages, {p['wall_s']:.0f} s",
            }
        )
    top = [g for g in r["growth"] if g["mb"] >= 0.5][:6]
    rows.append(
        {
            "name": f"day backtest ({tag}) what grows",
            "value": sum(g["mb"] for g in r["growth"]),
            "unit": "MB",
            "note": "; ".join(f"{g['path']} {g['len']:,} x {g['bytes_per_item']:.0f} B" for g in top) or "nothing",
        }
    )
    return rows


def run(hours: float = DEFAULT_HOURS, keep_decisions: bool = False) -> list[dict[str, Any]]:
    from benchmarks.daystream import DATA

    if not DATA.exists():
        return [{"name": "day backtest", "value": "", "unit": "", "note": f"skipped: {DATA} not present"}]
    return rows_of(measure(float(hours), bool(keep_decisions)))


def _cli(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_day", description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=24.0, help="market hours to stream (default 24)")
    ap.add_argument("--keep-decisions", action="store_true", help="keep every decision (BacktestConfig default)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the child's whole measurement as JSON")
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.hours, a.keep_decisions)))
        return 0
    r = measure(a.hours, a.keep_decisions)
    if a.json:
        print(json.dumps(r, indent=1))
    for row in rows_of(r):
        print(row)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    sys.exit(_cli(sys.argv[1:]))
