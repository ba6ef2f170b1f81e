"""The evaluation's chart as a PNG, drawn with numpy and written with zlib (no plotting dependency).

Three panels over the evaluated part, time left to right, each scaled to its own range (the ranges and the
colours are returned as a caption, which ``manage.py evaluate`` prints beside the file's path):

1. the mid (grey), our bid (green) and ask (red) quotes, our buy fills (green squares) and sell fills (red squares);
2. our P&L since the split by part: spread capture, adverse selection, inventory, fees, funding, and the total
   (black);
3. every strategy's total P&L since the split (ours black, the baselines in the caption's colours).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_evaluation_png"]

W, PANEL_H, PAD = 1200, 260, 12
GREY, GREEN, RED, BLACK = (150, 150, 150), (0, 150, 0), (210, 30, 30), (0, 0, 0)
PART_COLOURS = {
    "spread_capture": (31, 119, 180),
    "adverse_selection": (214, 39, 40),
    "inventory": (255, 127, 14),
    "fees": (44, 160, 44),
    "funding": (148, 103, 189),
    "total": BLACK,
}
STRATEGY_COLOURS = [BLACK, (120, 120, 120), (31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189)]


def _png(img: np.ndarray) -> bytes:
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


class _Panel:
    def __init__(self, img: np.ndarray, top: int, t0: int, t1: int, lo: float, hi: float) -> None:
        self.img, self.top, self.t0, self.t1 = img, top, t0, max(t1, t0 + 1)
        if not hi > lo:
            lo, hi = lo - 1.0, hi + 1.0
        self.lo, self.hi = lo, hi
        img[top + PANEL_H - 1, :] = (200, 200, 200)  # the panel's bottom rule
        if lo < 0 < hi:  # the zero line
            img[self._y(np.array([0.0]))[0], :] = (225, 225, 225)

    def _x(self, ts: np.ndarray) -> np.ndarray:
        return np.clip(((ts - self.t0) / (self.t1 - self.t0) * (W - 2 * PAD)).astype(int) + PAD, 0, W - 1)

    def _y(self, v: np.ndarray) -> np.ndarray:
        frac = (v - self.lo) / (self.hi - self.lo)
        return np.clip(
            self.top + PANEL_H - PAD - (frac * (PANEL_H - 2 * PAD)).astype(int), self.top, self.top + PANEL_H - 1
        )

    def line(self, ts: Sequence[int], vs: Sequence[float], colour: tuple[int, int, int], step: bool = False) -> None:
        t, v = np.asarray(ts, dtype=np.float64), np.asarray(vs, dtype=np.float64)
        if len(t) < 1:
            return
        if step and len(t) > 1:  # hold each value until the next timestamp
            t = np.repeat(t, 2)[1:]
            v = np.repeat(v, 2)[:-1]
        # densify so that consecutive points are at most a pixel apart in x, then break at NaN
        x, y = self._x(t).astype(float), v
        n = max(int(np.abs(np.diff(x)).sum()) + len(x), 2) if len(x) > 1 else 1
        grid = np.linspace(t[0], t[-1], n) if len(t) > 1 else t
        idx = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(t) - 1)
        vals = y[idx]
        ok = np.isfinite(vals)
        xs, ys = self._x(grid[ok]), self._y(vals[ok])
        self.img[ys, xs] = colour
        # vertical joins where consecutive pixels jump in y
        for a, b, xx in zip(ys[:-1], ys[1:], xs[1:], strict=True):
            if abs(int(b) - int(a)) > 1:
                lo, hi = sorted((int(a), int(b)))
                self.img[lo:hi, xx] = colour

    def marks(self, ts: Sequence[int], vs: Sequence[float], colour: tuple[int, int, int]) -> None:
        if not len(ts):
            return
        xs, ys = self._x(np.asarray(ts, dtype=np.float64)), self._y(np.asarray(vs, dtype=np.float64))
        for dx in (-2, -1, 0, 1, 2):
            for dy in (-2, -1, 0, 1, 2):
                self.img[np.clip(ys + dy, 0, self.img.shape[0] - 1), np.clip(xs + dx, 0, W - 1)] = colour


def _range(*seqs: Sequence[float]) -> tuple[float, float]:
    vals = [v for s in seqs for v in s if math.isfinite(v)]
    if not vals:
        return -1.0, 1.0
    lo, hi = min(vals), max(vals)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def write_evaluation_png(
    path: Path, rows: Sequence[Any], mid_ts: Sequence[int], mids: Sequence[float], split_ns: int, end_ns: int
) -> str:
    """Draw the chart of one recording's evaluation (module docstring) into ``path``; return its caption."""
    ours = rows[0].series
    img = np.full((3 * PANEL_H, W, 3), 255, dtype=np.uint8)
    lo_i = int(np.searchsorted(np.asarray(mid_ts), split_ns))
    mt, mv = list(mid_ts[lo_i:]), list(mids[lo_i:])
    lo, hi = _range(mv, ours.bids, ours.asks)
    p1 = _Panel(img, 0, split_ns, end_ns, lo, hi)
    p1.line(mt, mv, GREY, step=True)
    p1.line(ours.quote_ts, ours.bids, GREEN, step=True)
    p1.line(ours.quote_ts, ours.asks, RED, step=True)
    p1.marks([t for t, _p, s in ours.fills if s > 0], [p for _t, p, s in ours.fills if s > 0], GREEN)
    p1.marks([t for t, _p, s in ours.fills if s < 0], [p for _t, p, s in ours.fills if s < 0], RED)
    lo2, hi2 = _range(*ours.pnl.values())
    p2 = _Panel(img, PANEL_H, split_ns, end_ns, lo2, hi2)
    for part, colour in PART_COLOURS.items():
        p2.line(ours.pnl_ts, ours.pnl[part], colour, step=True)
    lo3, hi3 = _range(*(r.series.pnl["total"] for r in rows))
    p3 = _Panel(img, 2 * PANEL_H, split_ns, end_ns, lo3, hi3)
    for r, colour in zip(reversed(rows), reversed(STRATEGY_COLOURS[: len(rows)]), strict=True):
        p3.line(r.series.pnl_ts, r.series.pnl["total"], colour, step=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png(img))
    span_s = (end_ns - split_ns) / 1e9
    who = ", ".join(f"{r.strategy} rgb{c}" for r, c in zip(rows, STRATEGY_COLOURS, strict=False))
    parts = ", ".join(f"{k} rgb{c}" for k, c in PART_COLOURS.items())
    return (
        f"{path}: {span_s:.0f} s from the split, left to right. Top: mid (grey) {lo:.2f}..{hi:.2f}, our bid green, ask "
        f"red, fills as squares. Middle: our P&L by part {lo2:.3f}..{hi2:.3f} ({parts}). Bottom: total P&L "
        f"{lo3:.3f}..{hi3:.3f} ({who})."
    )
