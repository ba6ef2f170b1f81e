"""Alternate our backtest and hftbacktest's on the same recording and print one table.

    python -m benchmarks.anchor --anchor-python var/anchor-venv/bin/python [--rounds N] [--passes P] [--data RAW.gz]

Each round runs our backtest (:mod:`benchmarks.anchor.ours`, this virtualenv) and then hftbacktest's
(:mod:`benchmarks.anchor.theirs`, the anchor virtualenv), each in a fresh process timing the best of P passes
(hftbacktest's whole run takes ~50 ms, so one pass is at the mercy of a scheduler hiccup), so both see the machine's
load of the same minute; the shared machines change speed by 2-3× within an hour, so only rates from the same
run are compared. The recording is converted once with hftbacktest's own converter and cached beside the
other run files (``var/anchor/``), with its row counts.

Both rates are in the same unit: rows of hftbacktest's converted file per second of wall time, where a row is
one depth price level (diff or snapshot), one trade, or one snapshot "clear" marker, plus the rows its
converter duplicates when exchange and local time order disagree. ``bookTicker`` messages are dropped by the
converter (no ``t`` option), so they count as 0 rows, although our backtest parses and processes them (they
are the larger part of the recording's messages); our rate in our own unit (messages per second) is printed
beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[2]
DATA = (BASE_DIR / ".." / "shared" / "data" / "hftbacktest-binance-usdm-btcusdt-20240808").resolve() / (
    "raw/usdm_btcusdt_20240808.gz"
)
CACHE = BASE_DIR / "var" / "anchor"
THEIRS = Path(__file__).resolve().parent / "theirs.py"


def _last_json(cmd: list[str], what: str) -> dict[str, Any]:
    proc = subprocess.run(cmd, cwd=BASE_DIR, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def converted(anchor_python: str, raw: Path) -> tuple[Path, dict[str, Any]]:
    """hftbacktest's ``.npz`` of ``raw`` and its row counts, converted again only when ``raw`` is newer."""
    CACHE.mkdir(parents=True, exist_ok=True)
    npz = CACHE / (raw.name.removesuffix(".gz") + ".npz")
    counts = npz.with_suffix(".rows.json")
    if not (npz.exists() and counts.exists() and npz.stat().st_mtime >= raw.stat().st_mtime):
        rows = _last_json([anchor_python, str(THEIRS), "convert", str(raw), str(npz)], "hftbacktest convert")
        counts.write_text(json.dumps(rows))
    return npz, json.loads(counts.read_text())


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        lines.append(" | ".join(cells))
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.anchor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--anchor-python", required=True, help="python of the virtualenv with hftbacktest==2.4.4")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of (ours, theirs); at least 1, default 2")
    ap.add_argument("--passes", type=int, default=2, help="timed runs per process, best taken; default 2")
    ap.add_argument("--data", type=Path, default=DATA, help="Binance USD-M combined-stream recording (.gz)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.passes < 1:
        ap.error(f"--passes must be >= 1, got {args.passes}")
    if not args.data.exists():
        ap.error(f"no recording at {args.data}")
    npz, counts = converted(args.anchor_python, args.data)
    n_rows = counts["rows"]
    print(
        f"# {args.data.name}: {n_rows:,} hftbacktest rows = {counts['depth_rows']:,} depth + {counts['trade_rows']:,} "
        f"trade + {counts['snapshot_rows']:,} snapshot + {counts['clear_rows']} clear (bookTicker: 0 rows)",
        file=sys.stderr,
    )
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    ours_cmd = [sys.executable, "-m", "benchmarks.anchor.ours", str(args.data), str(args.passes)]
    theirs_cmd = [args.anchor_python, str(THEIRS), "run", str(npz), str(args.passes)]
    for i in range(args.rounds):
        ours.append(_last_json(ours_cmd, "our backtest"))
        theirs.append(_last_json(theirs_cmd, "hftbacktest run"))
        print(
            f"# round {i + 1}: ours {ours[-1]['wall_s']:.3f} s (+{ours[-1]['parse_s']:.1f} s parsing, untimed), "
            f"hftbacktest {theirs[-1]['wall_s']:.3f} s "
            f"(+{theirs[-1]['warmup_s']:.1f} s numba compile on a slice, untimed)",
            file=sys.stderr,
        )

    speed: list[tuple[str, ...]] = [("speed (rows = hftbacktest rows)", "ours rows/s", "hftbacktest rows/s", "ratio")]
    ratios = []
    for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        ro, rt = n_rows / o["wall_s"], n_rows / t["wall_s"]
        ratios.append(rt / ro)
        speed.append((f"round {i + 1}", f"{ro:,.0f}", f"{rt:,.0f}", f"{rt / ro:.1f}x"))
    med_o = statistics.median(n_rows / o["wall_s"] for o in ours)
    med_t = statistics.median(n_rows / t["wall_s"] for t in theirs)
    speed.append(("median", f"{med_o:,.0f}", f"{med_t:,.0f}", f"{statistics.median(ratios):.1f}x"))
    msgs = ours[0]["messages"]
    speed.append(
        (
            "ours in messages/s (incl. bookTicker)",
            f"{statistics.median(msgs / o['wall_s'] for o in ours):,.0f}",
            "",
            f"{msgs:,} msgs",
        )
    )
    print(_table(speed))
    print()

    o, t = ours[-1], theirs[-1]
    results: list[tuple[str, ...]] = [("result (last round)", "ours", "hftbacktest")]
    results += [
        ("fills buy / sell", f"{o['fills_buy']} / {o['fills_sell']}", f"{t['fills_buy']} / {t['fills_sell']}"),
        (
            "orders filled (any part) buy / sell",
            f"{o['orders_filled_buy']} / {o['orders_filled_sell']}",
            f"{t['fills_buy']} / {t['fills_sell']}",
        ),
        (
            "volume buy / sell, BTC",
            f"{o['volume_buy']:.3f} / {o['volume_sell']:.3f}",
            f"{t['volume_buy']:.3f} / {t['volume_sell']:.3f}",
        ),
        ("final position, BTC", f"{o['position']:+.3f}", f"{t['position']:+.3f}"),
        ("P&L at mid incl. fees, USDT", f"{o['pnl']:+.2f}", f"{t['pnl']:+.2f}"),
        ("fees, USDT (negative = rebate)", f"{o['fees']:+.2f}", f"{t['fees']:+.2f}"),
        ("mean quoted half-spread, bps", _fmt(o["mean_half_spread_bps"]), _fmt(t["mean_half_spread_bps"])),
    ]
    print(_table(results))
    same_o = all(r["fills_buy"] == o["fills_buy"] and r["pnl"] == o["pnl"] for r in ours)
    same_t = all(r["fills_buy"] == t["fills_buy"] and r["pnl"] == t["pnl"] for r in theirs)
    print(f"\n# results identical across rounds: ours {same_o}, hftbacktest {same_t}")
    if o["risk_events"]:
        print(f"# our risk rules that tripped: {sorted(set(o['risk_events']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
