"""What several benchmarks share: the repository root, the shared USD-M BTCUSDT recording, one callgrind run, the
window a callgrind child measures, and the rows that set a reference against a compiled implementation."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
USDM_BTCUSDT_RAW = (
    BASE_DIR.parent
    / "shared"
    / "data"
    / "hftbacktest-binance-usdm-btcusdt-20240808"
    / "raw"
    / "usdm_btcusdt_20240808.gz"
)


def callgrind_instructions(module: str, child_args: list[str], *, instr_at_start: bool = True) -> int:
    """Instructions callgrind counts in ``python -m <module> <child_args…>`` (the child turns instrumentation on
    and off itself when ``instr_at_start`` is False). Fixed hash seed, so two runs of one slice count the same."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                *([] if instr_at_start else ["--instr-atstart=no"]),
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                "-m",
                module,
                *child_args,
            ],
            cwd=BASE_DIR,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=True,
        )
    m = re.search(r"Collected : (\d+)", out.stderr)
    if not m:
        raise RuntimeError(f"callgrind printed no total: {out.stderr[-300:]}")
    return int(m.group(1))


def parsed_events(path: Path = USDM_BTCUSDT_RAW) -> list:
    """Every event of a Binance raw recording, parsed once before any timing (quarantined rows dropped)."""
    from apps.marketdata.parsers import Quarantined, parse_file

    return [e for e in parse_file("binance-raw", path) if not isinstance(e, Quarantined)]


def alternating_best(
    impls: Iterable[str], once: Callable[[str], tuple[float, Any]], rounds: int
) -> tuple[dict[str, float], dict[str, set]]:
    """``rounds`` rounds of ``once(impl)`` for each implementation in turn, so all of them see the same machine load.
    ``once`` returns (seconds, outcome); the best seconds of each implementation and the outcomes each gave."""
    names = list(impls)
    best = dict.fromkeys(names, float("inf"))
    outcomes: dict[str, set] = {name: set() for name in names}
    for _ in range(rounds):
        for name in names:
            seconds, outcome = once(name)
            best[name] = min(best[name], seconds)
            outcomes[name].add(outcome)
    return best, outcomes


def backtest_speed_rows(
    impls: Iterable[str], once: Callable[[str], tuple[float, int]], n_events: int, rounds: int, what: str, pair: str
) -> list[dict]:
    """The GLFT backtest with each implementation of ``what`` (``once(impl)``: its seconds and fills), alternating
    ``rounds`` times: events/s of each one's best round and the speed-up. Raises when ``pair`` filled differently."""
    best, fills = alternating_best(impls, once, rounds)
    if len(set().union(*fills.values())) != 1:
        raise RuntimeError(f"{pair} filled differently: {fills}")
    return comparison_rows(
        {impl: n_events / s for impl, s in best.items()},
        f"backtest with the {{impl}} {what}",
        "events/s",
        f"GLFT backtest, {n_events:,} events, best of {rounds} alternating rounds",
        f"backtest speed-up (compiled / reference {what})",
        ratio=best["reference"] / best["compiled"],
        ratio_note=f"same run, same events, {fills['compiled'].pop()} fills in every round",
    )


def comparison_rows(
    values: Mapping[str, float],
    name: str,
    unit: str,
    note: str | Callable[[str, float], str],
    ratio_name: str | None = None,
    *,
    ratio: float | None = None,
    ratio_note: str = "load-independent",
) -> list[dict]:
    """One row per implementation (``name`` with ``{impl}`` filled in; ``note`` a string or ``note(impl, value)``)
    and, given ``ratio_name``, a row with ``ratio`` or, without it, ``values``' reference / compiled."""
    rows = [
        {
            "name": name.format(impl=impl),
            "value": value,
            "unit": unit,
            "note": note if isinstance(note, str) else note(impl, value),
        }
        for impl, value in values.items()
    ]
    if ratio_name is not None:
        value = values["reference"] / values["compiled"] if ratio is None else ratio
        rows.append({"name": ratio_name, "value": value, "unit": "×", "note": ratio_note})
    return rows


@contextlib.contextmanager
def pickled(events: list) -> Iterator[str]:
    """The path of a temporary file holding ``events`` pickled, for callgrind children; removed on exit."""
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        pickle.dump(events, f)
    try:
        yield f.name
    finally:
        os.unlink(f.name)


def unpickled(path: str) -> list:
    """In a callgrind child: the events its parent pickled with :func:`pickled`."""
    with open(path, "rb") as f:
        return pickle.load(f)  # noqa: S301 - our own file, written a moment ago by the parent


def window_instructions(
    events: list, count: Callable[[str, str, int], int], subjects: Iterable[str], short: int, long: int, per: int
) -> dict[str, float]:
    """Instructions per event of each subject: ``events`` pickled once, ``count(subject, path, n)`` run for ``long``
    and ``short`` events, the difference divided by ``per`` (start-up, imports and warm-up cancel)."""
    with pickled(events) as path:
        return {s: (count(s, path, long) - count(s, path, short)) / per for s in subjects}


def instrumentation(on: bool) -> None:
    """Switches callgrind's instrumentation of this process on or off (a child started with ``--instr-atstart=no``)."""
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def replay_window(step: Callable[[Any], Any], events: list, warm: int, n: int) -> None:
    """In a callgrind child: ``step`` over the first ``warm`` events uninstrumented, then over the next ``n`` with
    instrumentation on."""
    for ev in events[:warm]:
        step(ev)
    instrumentation(True)
    for ev in events[warm : warm + n]:
        step(ev)
    instrumentation(False)


def print_per_event(per_event: Mapping[str, float], label: str) -> None:
    """Prints each implementation's instructions per event (``label`` with ``{impl}`` filled in) and their ratio."""
    for impl, n in per_event.items():
        print(f"{label.format(impl=impl)}: {n:,.0f}")
    print(f"ratio (reference / compiled): {per_event['reference'] / per_event['compiled']:.2f}x")


def reference_vs_compiled_rows(
    events: list,
    impls: Iterable[str],
    count: Callable[[str, str, int], int],
    short: int,
    long: int,
    per: int,
    label: str,
    note: Callable[[str, float], str],
    ratio_name: str,
) -> list[dict]:
    """Instructions per event of each implementation (:func:`window_instructions`): one row per implementation
    (``label`` with the name, ``note(impl, instructions)``) and a reference/compiled ratio row."""
    per_event = window_instructions(events, count, impls, short, long, per)
    return comparison_rows(per_event, label + " ({impl})", "instr", note, ratio_name)
