"""Fingerprint of the backtest engine's behaviour on the shared recordings: a SHA-256 of every decision and fill.

Run from the repository root::

    python tools/engine_fingerprint.py                 # print the fingerprints
    python tools/engine_fingerprint.py --check FILE    # compare with a recorded output, exit 1 on a difference

For each recording (Binance USD-M BTCUSDT, USD-M ETHUSDT, spot BTCUSDT; all events of the raw files) and each
strategy (the GLFT strategy core with its default parameters, the fixed-spread and the Avellaneda–Stoikov
baselines), the backtest driver replays the recording through the paper venue (5 ms entry and response
latency, risk-averse queue, seed 1) and the tool prints the number of market events, actions, order events,
decisions and fills, one SHA-256 over every decision and one over every fill. Each record is written out with
all its fields in declaration order, floats as ``repr`` (so one ulp shows), enums by name, mapping items sorted by
key (an input dictionary's meaning does not depend on its insertion order). A third digest covers the run's
summary without wall-clock numbers (P&L by component, spreads, markouts).

It exists to show that a restructuring changes nothing: record the output at one commit, then ``--check`` it
at the next. Only the import block below knows where the engine's modules live. The digests hold for the pinned
Python, NumPy and SciPy versions. Since the Hawkes fit left SciPy's SLSQP and NumPy's vector kernels (2026-12-06)
nothing on the decisions' path depends on which SIMD kernels NumPy or OpenBLAS pick for the CPU: the same file holds
on AVX2 and AVX-512 machines. To check that on one machine, run it again with
``OPENBLAS_CORETYPE=Haswell NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL"`` (the kernels an AVX2 machine runs; that
pair reproduced, at 263352c, the file an AVX2 machine had recorded there).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import hashlib
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# --- the only lines that know the engine's module layout -------------------------------------------------------
from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.simulation.backtest import EngineLoop
from apps.engine.simulation.baselines import ASParams, AvellanedaStoikovQuoter, FixedSpreadParams, FixedSpreadQuoter

# ---------------------------------------------------------------------------------------------------------------
from apps.marketdata.recordings import BINANCE_RAW_RECORDINGS, load_binance_raw

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

RECORDINGS = BINANCE_RAW_RECORDINGS


def strategies(tick: float, lot: float) -> dict[str, Any]:
    return {
        "glft": StrategyCore(StrategyParams(), tick_size=tick, lot_size=lot),
        "fixed": FixedSpreadQuoter(FixedSpreadParams(half_spread_bps=1.0), tick_size=tick, lot_size=lot),
        "as": AvellanedaStoikovQuoter(ASParams(horizon_s=10.0), tick_size=tick, lot_size=lot),
    }


def venue(tick: float, lot: float) -> PaperVenue:
    cfg = PaperVenueConfig(tick, lot, entry_latency_ns=5_000_000, response_latency_ns=5_000_000)
    return PaperVenue(cfg, seed=1)


# --- canonical text of a record ----------------------------------------------------------------------------------


def canon(x: Any) -> str:
    """One exact, order-stable text for a value: floats by repr, dataclasses field by field, dicts sorted."""
    if isinstance(x, enum.Enum):
        return f"{type(x).__name__}.{x.name}"
    if isinstance(x, bool) or x is None:
        return repr(x)
    if isinstance(x, float):  # numpy float64 too: its value, not its type
        return repr(float(x))
    if isinstance(x, int):
        return repr(int(x))
    if isinstance(x, str):
        return repr(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        inner = ",".join(f"{f.name}={canon(getattr(x, f.name))}" for f in dataclasses.fields(x))
        return f"{type(x).__name__}({inner})"
    if isinstance(x, Mapping):  # a dict, or a decision's typed record (apps/engine/market/inputs.py): its items
        items = sorted((canon(k), canon(v)) for k, v in x.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(canon(v) for v in x) + "]"
    if hasattr(x, "item"):  # numpy scalars
        return canon(x.item())
    raise TypeError(f"no canonical form for {type(x).__name__}: {x!r}")


def digest(records: Iterable[Any]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(canon(r).encode())
        h.update(b"\n")
    return h.hexdigest()


# --- running ------------------------------------------------------------------------------------------------------


def events_of(files: tuple[str, ...]) -> list[Any]:
    return load_binance_raw(DATA, files)


def fingerprint(names: Iterable[str]) -> Iterator[str]:
    for name in names:
        files, tick, lot = RECORDINGS[name]
        missing = [f for f in files if not (DATA / f).exists()]
        if missing:
            yield f"{name}: skipped, missing {missing}"
            continue
        events = events_of(files)
        for label, strategy in strategies(tick, lot).items():
            result = EngineLoop(strategy, venue(tick, lot), name=label).run(events)
            s = result.stats
            yield (
                f"{name} {label}: events={s.market_events} actions={s.actions} order_events={s.order_events} "
                f"decisions={len(result.decisions)} fills={len(result.fills)}"
            )
            yield f"{name} {label}: decisions sha256={digest(result.decisions)}"
            yield f"{name} {label}: fills     sha256={digest(result.fills)}"
            yield f"{name} {label}: summary   sha256={digest([result.summary(timing=False)])}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", type=Path, help="a recorded output to compare with")
    ap.add_argument("recordings", nargs="*", help=f"any of {', '.join(RECORDINGS)} (default: all)")
    args = ap.parse_args(argv)
    args.recordings = args.recordings or list(RECORDINGS)
    unknown = sorted(set(args.recordings) - set(RECORDINGS))
    if unknown:
        ap.error(f"unknown recording(s) {unknown}; known: {list(RECORDINGS)}")
    t0 = time.perf_counter()
    lines = []
    for line in fingerprint(args.recordings):
        print(line, flush=True)
        lines.append(line)
    print(f"# {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.check is None:
        return 0
    expected = [ln for ln in args.check.read_text().splitlines() if ln and not ln.startswith("#")]
    if args.recordings != list(RECORDINGS):
        prefixes = tuple(f"{n} " for n in args.recordings)
        expected = [ln for ln in expected if ln.startswith(prefixes)]
    if lines == expected:
        print(f"identical to {args.check}", file=sys.stderr)
        return 0
    for want, got in zip(expected, lines, strict=False):
        if want != got:
            print(f"- {want}\n+ {got}", file=sys.stderr)
    if len(expected) != len(lines):
        print(f"{len(expected)} recorded lines, {len(lines)} now", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
