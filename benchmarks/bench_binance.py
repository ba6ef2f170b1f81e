"""Binance connector against the local replay server (tests/venues/binance_server.py), shared USD-M BTCUSDT recording
(and the same two measures on the shared spot BTCUSDT recording, ``@depth@100ms``).

* throughput: the whole recording (its 93,912 stream messages from the first diff that bridges its REST snapshot:
  trades, bookTicker, depth@0ms diffs) replayed as fast as
  the socket takes it; messages/s the connector receives, parses and applies to its book (wall time from the first
  message received to the last).
* latency: a slice replayed at 10x recorded speed (about 10x the live rate) with a consumer polling the engine feed
  every 0.5 ms, like the quoting loop: receipt (the connector's ``ts_local_ns``, stamped when the frame is read) to
  the event being handed to the consumer by ``BinanceFeed.poll``; p50/p99 over every event.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
REC = DATA / "hftbacktest-binance-usdm-btcusdt-20240808" / "raw" / "usdm_btcusdt_20240808.gz"
SPOT_REC = DATA / "hftbacktest-binance-spot-btcusdt-20240808" / "raw" / "spot_btcusdt_20240808.gz"


def _setup() -> None:
    import django

    django.setup()


def _throughput(path: Path = REC, venue: str = "binance-usdm") -> tuple[float, int]:
    from apps.venues.binance.connector import BinanceConnector
    from tests.venues.binance_server import BinanceReplayServer, load_recording

    rec = load_recording(path)
    srv = BinanceReplayServer([rec], speed=0.0).start()
    conn = BinanceConnector(venue, ["BTCUSDT"], ws_url=srv.base_ws, rest_url=srv.base_http)
    first = 0
    try:
        conn.start()
        deadline = time.monotonic() + 120
        while conn.stats.messages < len(rec.messages) and time.monotonic() < deadline:
            if not first and conn.stats.messages:
                first = time.perf_counter_ns()
            while True:  # keep the queue from growing without bound, as a consumer would
                try:
                    conn.queue.get_nowait()
                except Exception:  # noqa: BLE001 - queue.Empty
                    break
            time.sleep(0.001)
        last = time.perf_counter_ns()
    finally:
        conn.stop()
        srv.stop()
    n = conn.stats.messages
    return n / ((last - first) / 1e9), n


def _latency(path: Path = REC, venue: str = "binance-usdm") -> tuple[float, float, int]:
    from apps.venues.binance.connector import BinanceConnector, BinanceFeed
    from tests.venues.binance_server import BinanceReplayServer, load_recording

    rec = load_recording(path, 12_000)
    srv = BinanceReplayServer([rec], speed=10.0).start()
    conn = BinanceConnector(venue, ["BTCUSDT"], ws_url=srv.base_ws, rest_url=srv.base_http)
    feed = BinanceFeed(conn)
    lat: list[int] = []
    try:
        conn.start()
        deadline = time.monotonic() + 60
        while not (srv.done.is_set() and conn.stats.messages >= len(rec.messages)) and time.monotonic() < deadline:
            polled = feed.poll(time.time_ns())
            now = time.time_ns()
            if not polled.resynced:
                lat.extend(now - e.ts_local_ns for e in polled.events)
            time.sleep(0.0005)
    finally:
        conn.stop()
        srv.stop()
    a = np.asarray(lat, dtype=np.float64) / 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), len(a)


def run() -> list[dict]:
    if not REC.exists():
        return [{"name": "binance connector", "value": "", "unit": "", "note": f"skipped: {REC} absent"}]
    _setup()
    rate, n = _throughput()
    p50, p99, n_lat = _latency()
    return [
        {
            "name": "binance ws parse+book msgs/s",
            "value": rate,
            "unit": "msg/s",
            "note": f"{n:,} messages of the USD-M BTCUSDT recording from the local server",
        },
        {"name": "binance receipt->event p50", "value": p50, "unit": "µs", "note": f"{n_lat:,} events, 10x speed"},
        {"name": "binance receipt->event p99", "value": p99, "unit": "µs", "note": "consumer polls every 0.5 ms"},
        *_spot_rows(),
    ]


def _spot_rows() -> list[dict]:
    if not SPOT_REC.exists():
        return [{"name": "binance spot connector", "value": "", "unit": "", "note": f"skipped: {SPOT_REC} absent"}]
    rate, n = _throughput(SPOT_REC, "binance-spot")
    p50, p99, n_lat = _latency(SPOT_REC, "binance-spot")
    return [
        {
            "name": "binance spot parse+book msgs/s",
            "value": rate,
            "unit": "msg/s",
            "note": f"{n:,} messages of the spot BTCUSDT recording from the local server",
        },
        {"name": "binance spot receipt->event p50", "value": p50, "unit": "µs", "note": f"{n_lat:,} events, 10x"},
        {"name": "binance spot receipt->event p99", "value": p99, "unit": "µs", "note": "consumer polls every 0.5 ms"},
    ]


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmweb.settings")
    for row in run():
        print(row)
