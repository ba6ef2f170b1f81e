"""What several benchmarks share: the repository root, the shared USD-M BTCUSDT recording, and one callgrind run."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

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
    """Instructions per event of each implementation: ``events`` pickled for the callgrind children, ``count(impl,
    path, n)`` run for ``long`` and ``short`` events, the difference divided by ``per``; one row per implementation
    (``label`` with the name, ``note(impl, instructions)``) and a reference/compiled ratio row."""
    rows: list[dict] = []
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        pickle.dump(events, f)
    try:
        result: dict[str, float] = {}
        for name in impls:
            result[name] = (count(name, f.name, long) - count(name, f.name, short)) / per
            rows.append(
                {"name": f"{label} ({name})", "value": result[name], "unit": "instr", "note": note(name, result[name])}
            )
        rows.append(
            {
                "name": ratio_name,
                "value": result["reference"] / result["compiled"],
                "unit": "×",
                "note": "load-independent",
            }
        )
    finally:
        os.unlink(f.name)
    return rows
