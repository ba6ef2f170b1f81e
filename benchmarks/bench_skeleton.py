"""Walking-skeleton numbers: simulator and strategy-core throughput, writer COPY vs row-by-row INSERT."""

from __future__ import annotations

import time

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams

SIM_SECONDS = 300


def _sim_only() -> tuple[int, float]:
    sp = SimulatorParams()
    sim = MarketSimulator(sp, seed=1)
    t0 = time.perf_counter()
    n = sum(1 for _ in sim.events(until_ns=sp.start_ts_ns + SIM_SECONDS * 10**9))
    return n, time.perf_counter() - t0


def _full_pipeline() -> tuple[int, float, int]:
    sp = SimulatorParams()
    events = list(MarketSimulator(sp, seed=1).events(until_ns=sp.start_ts_ns + SIM_SECONDS * 10**9))
    venue = PaperVenue(PaperVenueConfig(tick_size=sp.tick_size, lot_size=sp.lot_size), seed=1)
    core = StrategyCore(
        StrategyParams.from_dict({"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}),
        tick_size=sp.tick_size,
        lot_size=sp.lot_size,
    )

    def handle(evs):
        for oe in evs:
            acts = core.on_event(oe)
            if acts:
                handle(venue.submit(acts, oe.ts_local_ns))

    t0 = time.perf_counter()
    for ev in events:
        handle(venue.on_market(ev))
        acts = core.on_event(ev)
        if acts:
            handle(venue.submit(acts, ev.ts_local_ns))
    return len(events), time.perf_counter() - t0, core.fills


def _writer_copy_vs_insert(n: int = 20000) -> tuple[float, float]:
    import django

    django.setup()
    from datetime import UTC, datetime

    from django.db import connection

    from apps.marketdata.writer import BatchedWriter, TableSpec

    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS bench_rows (ts timestamptz, a double precision, b bigint, c text)")
        cur.execute("TRUNCATE bench_rows")
    spec = TableSpec("bench_rows", ("ts", "a", "b", "c"))
    now = datetime.now(tz=UTC)
    rows = [(now, float(i), i, "x") for i in range(n)]
    w = BatchedWriter([spec], max_batch_rows=n, max_buffer_rows=n * 2)
    for r in rows:
        w.add("bench_rows", r)
    t0 = time.perf_counter()
    assert w.flush()
    t_copy = time.perf_counter() - t0
    with connection.cursor() as cur:
        t0 = time.perf_counter()
        for r in rows[: n // 4]:
            cur.execute("INSERT INTO bench_rows VALUES (%s, %s, %s, %s)", r)
        t_insert = (time.perf_counter() - t0) * 4
    return n / t_copy, n / t_insert


def _gateway_check_ns() -> float:
    import timeit

    from apps.engine.market.events import PlaceOrder, Side
    from apps.engine.risk.gateway import Mode, OrderGateway

    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001), seed=1)
    gw = OrderGateway(venue, Mode.REDUCING)
    order = PlaceOrder("x", Side.SELL, 100.0, 0.01)
    return min(timeit.repeat(lambda: gw.check(order, 0.05), number=20000, repeat=5)) / 20000 * 1e9


def run() -> list[dict]:
    gate_ns = _gateway_check_ns()
    n, dt = _sim_only()
    n2, dt2, fills = _full_pipeline()
    copy_rate, insert_rate = _writer_copy_vs_insert()
    return [
        {
            "name": "simulator events/s",
            "value": n / dt,
            "unit": "events/s",
            "note": f"{n} events, {SIM_SECONDS}s market",
        },
        {
            "name": "core+paper venue events/s",
            "value": n2 / dt2,
            "unit": "events/s",
            "note": f"{fills} fills; estimators + quoter + queue model",
        },
        {"name": "core+venue per event", "value": dt2 / n2 * 1e6, "unit": "µs/event"},
        {"name": "writer COPY rows/s", "value": copy_rate, "unit": "rows/s"},
        {"name": "row-by-row INSERT rows/s", "value": insert_rate, "unit": "rows/s"},
        {"name": "COPY / INSERT ratio", "value": copy_rate / insert_rate, "unit": "x"},
        {"name": "order-gateway kill-switch check", "value": gate_ns, "unit": "ns/call", "note": "in-memory, per send"},
    ]
