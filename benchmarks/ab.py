"""A/B speed of the engine against an earlier commit, alternating old and new in one run.

    python -m benchmarks.ab REF [--rounds N]

The machines are shared and their speed moves by 2-3x within an hour, so a number from one run compared with a
number from another says little. This checks out ``REF`` into a temporary ``git worktree`` and, for each round,
runs the same three measurements in a fresh process of the old tree and then of the new one, on the same parsed
events (the shared Binance USD-M recording):

* ``estimators``: :class:`apps.engine.estimators.market.MarketEstimators` over every event, best of 3 passes;
* ``pipeline``: :class:`apps.engine.core.StrategyCore` (estimators, decisions, order reconciliation), best of 2;
* ``backtest``: the GLFT backtest (core + paper venue with the L2 queue model + ledger), best of 2.

It prints events/s per round and the median new/old ratio. ``REF`` must be recent enough to share the event
classes (they are rebuilt in the old tree by name and fields; either module layout works). The worktree is
removed afterwards. When ``REF`` has Cython modules (docs/compiled-core.md), they are compiled into its worktree
first (``pip wheel`` in pip's isolated build environment, the ``.so`` files copied beside their ``.pyx``; nothing
is installed into the venv), and a tree whose compiled modules fell back to Python is an error, not a row.
"""

from __future__ import annotations

import argparse
import enum
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.bench_engine import BASE_DIR, DATA, LOT, TICK

MEASURES = ("estimators", "pipeline", "backtest")


def _best_rate(run, n_events: int, passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return n_events / best


# Where each module lives, newest layout first: REF may predate the engine's subpackages (issue 14).
_LAYOUTS = {
    "core": ("apps.engine.core",),
    "estimators": ("apps.engine.estimators.market", "apps.engine.estimate"),
    "paper": ("apps.engine.execution.paper", "apps.engine.paper"),
    "backtest": ("apps.engine.simulation.backtest", "apps.engine.backtest"),
    "events": ("apps.engine.market.events", "apps.engine.events"),
}


_SIDE_FIELDS = frozenset({"aggressor", "side"})


def _plain(value: Any) -> Any:
    """An event field as a built-in type (an IntEnum side as its int), so either tree can unpickle it."""
    return int(value) if isinstance(value, enum.IntEnum) else value


def _engine_modules() -> dict[str, Any]:
    import importlib

    out = {}
    for key, candidates in _LAYOUTS.items():
        for name in candidates:
            try:
                out[key] = importlib.import_module(name)
                break
            except ModuleNotFoundError:
                continue
        else:
            raise ModuleNotFoundError(f"none of {candidates} in this tree")
    return out


def _build_extensions(tree: Path, tmp: Path) -> None:
    """Compile ``tree``'s Cython extensions in place without installing anything (a no-op without .pyx files)."""
    if not any(tree.glob("apps/**/*.pyx")):
        return
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(tree)],
        check=True,
        capture_output=True,
    )
    for whl in wheels.glob("*.whl"):
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                if name.endswith(".so"):
                    (tree / name).write_bytes(z.read(name))


def _fallbacks() -> dict[str, str]:
    """Compiled modules of the tree just imported that fell back to Python (none in a tree without them)."""
    try:
        from apps.engine import compiled
    except ImportError:
        return {}
    return dict(compiled.FALLBACKS)


def worker(root: str, events_path: str) -> dict[str, float]:
    """Measure in the tree at ``root`` (run in its own process, with ``root`` first on sys.path)."""
    sys.path.insert(0, root)
    mods = _engine_modules()
    StrategyCore, StrategyParams = mods["core"].StrategyCore, mods["core"].StrategyParams
    MarketEstimators = mods["estimators"].MarketEstimators
    PaperVenue, PaperVenueConfig = mods["paper"].PaperVenue, mods["paper"].PaperVenueConfig
    EngineLoop = mods["backtest"].EngineLoop
    if fell_back := _fallbacks():
        raise RuntimeError(f"{root}: compiled modules fell back to Python: {fell_back}")

    with open(events_path, "rb") as f:
        rows = pickle.load(f)  # noqa: S301 - a file this process's parent wrote a moment ago
    Side = mods["events"].Side  # sides travel as ±1 (the old tree's enum is another class)
    events = [
        getattr(mods["events"], name)(**{k: Side(v) if k in _SIDE_FIELDS else v for k, v in fields.items()})
        for name, fields in rows
    ]
    n = len(events)

    def estimators() -> None:
        est = MarketEstimators(tick_size=TICK)
        for ev in events:
            est.on_event(ev)

    def pipeline() -> None:
        core = StrategyCore(StrategyParams.from_dict({"max_inventory": 0.05}), tick_size=TICK, lot_size=LOT)
        for ev in events:
            core.on_event(ev)

    def backtest() -> None:
        cfg = PaperVenueConfig(TICK, LOT, entry_latency_ns=5_000_000, response_latency_ns=5_000_000)
        EngineLoop(StrategyCore(StrategyParams(), tick_size=TICK, lot_size=LOT), PaperVenue(cfg, seed=1)).run(events)

    return {
        "estimators": _best_rate(estimators, n, 3),
        "pipeline": _best_rate(pipeline, n, 2),
        "backtest": _best_rate(backtest, n, 2),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("ref", nargs="?", help="git commit to compare the working tree against")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", nargs=2, metavar=("ROOT", "EVENTS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    if not args.ref:
        ap.error("give the git commit to compare against, e.g. HEAD~5")
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")
    if not DATA.exists():
        print(f"skipped: {DATA} not present", file=sys.stderr)
        return 0
    sys.path.insert(0, str(BASE_DIR))
    from apps.marketdata.parsers import parse_file

    rev = subprocess.run(
        ["git", "rev-parse", "--verify", f"{args.ref}^{{commit}}"], cwd=BASE_DIR, capture_output=True, text=True
    )
    if rev.returncode:
        ap.error(f"not a commit in this repository: {args.ref!r} ({rev.stderr.strip()})")
    with tempfile.TemporaryDirectory(prefix="mm-ab-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), rev.stdout.strip()],
            cwd=BASE_DIR,
            check=True,
            capture_output=True,
        )
        try:
            _build_extensions(old, Path(tmp))
            events_path = Path(tmp) / "events.pkl"
            events = [e for e in parse_file("binance-raw", DATA) if hasattr(e, "ts_local_ns")]
            # by class name and fields, so the old tree rebuilds them from wherever its events module lives
            rows = [(type(e).__name__, {f: _plain(getattr(e, f)) for f in e.__dataclass_fields__}) for e in events]
            events_path.write_bytes(pickle.dumps(rows))
            results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
            for r in range(args.rounds):
                for label, root in (("old", old), ("new", BASE_DIR)):
                    out = subprocess.run(
                        [sys.executable, "-m", "benchmarks.ab", "--worker", str(root), str(events_path)],
                        cwd=BASE_DIR,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    results[label].append(res)
                    row = "  ".join(f"{m} {res[m]:>9,.0f}/s" for m in MEASURES)
                    print(f"round {r + 1} {label}: {row}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=BASE_DIR, capture_output=True)
    print(f"{len(events):,} events; median new/old over {args.rounds} round(s):")
    for m in MEASURES:
        ratios = [n[m] / o[m] for n, o in zip(results["new"], results["old"], strict=True)]
        print(f"  {m:10s} {statistics.median(ratios):.2f}x  (per round: {', '.join(f'{x:.2f}' for x in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
