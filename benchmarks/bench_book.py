"""L2 book: the pure-Python reference against the compiled class, on the shared Binance USD-M BTCUSDT recording.

Every depth message of the file (the 1,000-level snapshot and 6,551 diffs, 443,521 level updates) is applied in
file order, as :class:`~apps.engine.estimators.market.MarketEstimators` applies them, to a fresh book of each kind.
The file is parsed once, before any timing. The two implementations alternate, ``ROUNDS`` times each, in one run
(so both see the same machine load) and the best round of each is reported, with their ratio.

Wall clock moves with the load of a shared machine; instruction counts do not. When ``valgrind`` is on PATH, each
implementation also runs under ``valgrind --tool=callgrind`` in a child process on a fixed slice (the snapshot
and the first ``SLICE`` diffs after it, pickled once), and again replaying only the first half: the difference
of the two instruction totals, divided by the second half's diffs, is the instructions per depth message (and per
level update) of diffs ``SLICE/2+1 .. SLICE``, free of interpreter start-up, imports and first-call warm-up.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from benchmarks import common

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = common.USDM_BTCUSDT_RAW
ROUNDS = 5
SLICE = 500  # diffs after the snapshot replayed under callgrind (~34k level updates; ~1 min under valgrind)


def _depth_events() -> list:
    from apps.engine.market.events import DepthSnapshot, DepthUpdate
    from apps.marketdata.parsers import parse_file

    return [e for e in parse_file("binance-raw", DATA) if isinstance(e, (DepthUpdate, DepthSnapshot))]


def _classes() -> dict[str, type]:
    from apps.engine.market import _book
    from apps.engine.market.book import PyOrderBook

    return {"reference": PyOrderBook, "compiled": _book.OrderBook}


def _replay(cls: type, events: list) -> float:
    from apps.engine.market.events import DepthSnapshot

    book = cls()
    snap, upd = book.apply_snapshot, book.apply_update
    t0 = time.perf_counter()
    for ev in events:
        if type(ev) is DepthSnapshot:
            snap(ev)
        else:
            upd(ev)
    return time.perf_counter() - t0


def _slice(events: list) -> list:
    from apps.engine.market.events import DepthSnapshot

    i = next(i for i, e in enumerate(events) if isinstance(e, DepthSnapshot))
    return events[i : i + 1 + SLICE]


def _callgrind_child(impl: str, path: str, n_diffs: int) -> None:
    """Runs under valgrind: load the slice, build the book from the snapshot, then replay its first n diffs."""
    events = common.unpickled(path)
    book = _classes()[impl]()
    book.apply_snapshot(events[0])
    upd = book.apply_update
    for ev in events[1 : 1 + n_diffs]:
        upd(ev)


def _instructions(impl: str, path: str, n_diffs: int) -> int:
    return common.callgrind_instructions("benchmarks.bench_book", ["--callgrind-child", impl, path, str(n_diffs)])


def run() -> list[dict]:
    if not DATA.exists():
        return [{"name": "book updates", "value": "", "unit": "", "note": f"skipped: {DATA} not present"}]
    events = _depth_events()
    from apps.engine.market.events import DepthUpdate

    n_levels = sum(len(e.bids) + len(e.asks) for e in events if isinstance(e, DepthUpdate))
    classes = _classes()
    best, _ = common.alternating_best(classes, lambda name: (_replay(classes[name], events), None), ROUNDS)
    rows = common.comparison_rows(
        {name: n_levels / s for name, s in best.items()},
        "book level updates/s ({impl})",
        "levels/s",
        f"{len(events):,} depth messages, {n_levels:,} level updates, best of {ROUNDS} alternating rounds",
    )
    rows += common.comparison_rows(
        {name: s / len(events) * 1e6 for name, s in best.items()},
        "book per depth message ({impl})",
        "µs",
        "",
        "book speed-up (compiled / reference)",
        ratio=best["reference"] / best["compiled"],
        ratio_note="same run, same events",
    )
    if shutil.which("valgrind") is None:
        rows.append({"name": "book instructions", "value": "", "unit": "", "note": "skipped: valgrind not on PATH"})
        return rows
    part = _slice(events)
    half = SLICE // 2
    slice_levels = sum(len(e.bids) + len(e.asks) for e in part[1 + half :])
    rows += common.reference_vs_compiled_rows(
        part,
        classes,
        _instructions,
        half,
        SLICE,
        SLICE - half,
        "book instructions per depth message",
        lambda _name, n: (
            f"callgrind, diffs {half + 1}-{SLICE} after the snapshot "
            f"({n * (SLICE - half) / slice_levels:,.0f} per level update)"
        ),
        "book instruction ratio (reference / compiled)",
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--callgrind-child":
        sys.path.insert(0, str(BASE_DIR))
        _callgrind_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        for row in run():
            print(row)
