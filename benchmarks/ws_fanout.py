"""`make bench-ws`: WebSocket fan-out of the live page, against the real stack on this machine.

One running paper session, its quoting loop in this process (publishing a snapshot every 100 ms = 10 updates/s),
daphne in a subprocess, and N authenticated WebSocket clients (default 100, in a second subprocess so their CPU
is not this process's) that behave like the page: parse each snapshot, acknowledge it, keep going. Measured:

* delivered snapshots per client (min / median; a starved client shows as a low min);
* snapshot→browser latency (built in the loop → parsed by the client) and decision→browser latency (the
  decision's event time → the first snapshot carrying it reaches the client), p50 / p99; target p99 < 250 ms;
* the quoting loop's own costs with and without the clients: one step (events → decisions → orders) and one
  publish (snapshot build + hand-over), p50 / p99, and event→decision latency (wall time at the end of the step
  that made a decision − the decision's event time, which includes the loop's sleep between steps).

Everything runs on 127.0.0.1; every loop is bounded in time. Prints a table like ``make bench``.

    python -m benchmarks.ws_fanout [--clients 100] [--seconds 60] [--baseline-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
PUBLISH_MS = 100  # 10 updates/s
LOOP_MS = 50
P99_TARGET_MS = 250.0
BENCH_USER, BENCH_PASSWORD = "bench-ws", "bench-ws-password-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --- the clients (a subprocess) ---------------------------------------------------------------------------------


async def _client(url: str, headers: dict[str, str], gate: asyncio.Semaphore, ready: list, out: dict) -> None:
    """One page: connect (at most ``CONNECTS_AT_ONCE`` handshakes at a time, as browsers opening the page over a few
    seconds), then parse and ack every snapshot; counting starts when every client is connected."""
    import websockets

    got = 0
    snap_lat: list[float] = []
    dec_lat: list[float] = []
    seen: list[tuple[int, int]] = []  # (decision event time, wall time this client first saw it)
    seen_decision = 0
    all_in, until = ready[0], ready[1]
    try:
        async with gate:
            ws = await websockets.connect(url, additional_headers=headers, max_size=2**22, open_timeout=60)
        ready[2] += 1
        if ready[2] + ready[3] == ready[4]:
            all_in.set()
        async with ws:
            # read and ack from the start (a real page does); count only once every client is in
            while True:
                left = until[0] - time.monotonic()
                if left <= 0:
                    break
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=left)
                except TimeoutError:
                    break
                now = time.time_ns()
                msg = json.loads(raw)  # what the page does with every message
                if msg.get("type") != "snapshot":
                    continue
                await ws.send(json.dumps({"ack": msg["seq"]}))
                if not all_in.is_set():
                    continue
                s = msg["snapshot"]
                got += 1
                snap_lat.append((now - s["built_ns"]) / 1e6)
                d = s.get("decision")
                if d and d["ts_ns"] > seen_decision:
                    if seen_decision:
                        dec_lat.append((now - d["ts_ns"]) / 1e6)
                        seen.append((d["ts_ns"], now))
                    seen_decision = d["ts_ns"]
    except Exception as exc:  # noqa: BLE001 - reported, counted as a starved client
        out.setdefault("errors", []).append(repr(exc)[:200])
        ready[3] += 1
        if ready[2] + ready[3] == ready[4]:
            all_in.set()
    out.setdefault("delivered", []).append(got)
    out.setdefault("snapshot_ms", []).extend(snap_lat)
    out.setdefault("event_ms", []).extend(dec_lat)
    out.setdefault("seen", []).extend(seen)


CONNECTS_AT_ONCE = 10


async def _clients_main(url: str, cookie: str, origin: str, n: int, seconds: float) -> dict:
    out: dict = {}
    headers = {"Cookie": cookie, "Origin": origin}
    all_in = asyncio.Event()
    until = [0.0]
    ready: list = [all_in, until, 0, 0, n]  # event, end time, connected, failed, total
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    t0 = time.monotonic()

    async def clock() -> None:
        await asyncio.wait_for(all_in.wait(), timeout=120)
        out["connect_s"] = time.monotonic() - t0
        until[0] = time.monotonic() + seconds

    until[0] = time.monotonic() + 120 + seconds  # replaced once all are in
    await asyncio.gather(clock(), *(_client(url, headers, gate, ready, out) for _ in range(n)))
    return out


# --- the loop and the stack (this process) ------------------------------------------------------------------------


class _Timed:
    """Wraps the loop's step and publish to time them (and the decisions each step made)."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self.phase = "warmup"
        self.step_ms: dict[str, list[float]] = {}
        self.publish_ms: dict[str, list[float]] = {}
        self.decision_ms: dict[str, list[float]] = {}
        self.decided_at: dict[int, int] = {}  # decision event time -> wall time at the end of its step
        step, publish = loop.step, loop._publish
        self._last_decision = 0

        def timed_step() -> bool:
            t0 = time.perf_counter()
            ok = step()
            self.step_ms.setdefault(self.phase, []).append((time.perf_counter() - t0) * 1e3)
            d = getattr(loop, "core", None) and loop.core.last_decision
            if d is not None and d.ts_ns != self._last_decision:
                self._last_decision = d.ts_ns
                done = time.time_ns()  # the decision exists from the end of the step that made it
                self.decided_at[d.ts_ns] = done
                self.decision_ms.setdefault(self.phase, []).append((done - d.ts_ns) / 1e6)
            return ok

        def timed_publish(force: bool = False) -> None:
            before = loop.stats.publishes
            t0 = time.perf_counter()
            publish(force)
            if loop.stats.publishes != before:
                self.publish_ms.setdefault(self.phase, []).append((time.perf_counter() - t0) * 1e3)

        loop.step = timed_step
        loop._publish = timed_publish


def _setup() -> tuple[object, object]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmweb.settings")
    os.environ["MM_PUBLISH_INTERVAL_MS"] = str(PUBLISH_MS)
    os.environ["MM_LOOP_INTERVAL_MS"] = str(LOOP_MS)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from apps.control.permissions import Role, assign_role
    from apps.control.services import Actor, create_paper_session

    user_model = get_user_model()
    user = user_model.objects.filter(username=BENCH_USER).first() or user_model.objects.create_user(BENCH_USER)
    user.set_password(BENCH_PASSWORD)
    user.save()
    assign_role(user, Role.VIEWER)  # the clients only read
    session = create_paper_session(
        Actor(label="bench-ws"),
        name=f"bench-ws-{int(time.time())}",
        seed=7,
        params={"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}},
        start=False,
    )
    return user, session


def _cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _stack_env() -> dict[str, str]:
    from django.conf import settings
    from django.db import connection

    sd = connection.settings_dict
    host = sd["HOST"]
    auth = f"{sd['USER'] or 'postgres'}:{sd['PASSWORD']}@" if sd["PASSWORD"] else f"{sd['USER'] or 'postgres'}@"
    if host.startswith("/"):
        db = f"postgresql://{auth}/{sd['NAME']}?host={host}"
    else:
        db = f"postgresql://{auth}{host or '127.0.0.1'}{':' + str(sd['PORT']) if sd['PORT'] else ''}/{sd['NAME']}"
    env = dict(os.environ)
    env.update(DATABASE_URL=db, REDIS_URL=settings.REDIS_URL, PYTHONUNBUFFERED="1")
    return env


def run(clients: int = 100, seconds: float = 60.0, baseline_s: float = 20.0) -> list[dict]:
    user, session = _setup()
    from apps.live.broadcast import publisher
    from apps.trading.loop import QuotingLoop
    from apps.trading.models import TradingSession

    env = _stack_env()
    port = _free_port()
    logs = Path(tempfile.mkdtemp(prefix="mm-bench-ws-"))
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mmweb.asgi:application"],
        cwd=BASE_DIR,
        env=env,
        stdout=(logs / "daphne.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    loop = QuotingLoop(session.pk)
    timed = _Timed(loop)
    thread = threading.Thread(target=loop.run, kwargs={"max_seconds": baseline_s + seconds + 120}, daemon=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        thread.start()
        # warm-up: κ and σ need some seconds of market before the loop quotes
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (hasattr(loop, "core") and loop.core.tracker.open_orders()):
            time.sleep(0.2)
        timed.phase = "without clients"
        time.sleep(baseline_s)
        timed.phase = "with clients"
        sent0, replaced0 = publisher.stats.sent, publisher.stats.replaced
        sends_before = len(publisher.stats.send_s)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.ws_fanout",
                "--as-clients",
                f"ws://127.0.0.1:{port}/ws/sessions/{session.pk}/",
                "--cookie",
                _cookie(user),
                "--origin",
                f"http://127.0.0.1:{port}",
                "--clients",
                str(clients),
                "--seconds",
                str(seconds),
            ],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
        timed.phase = "after"
        if proc.returncode != 0:
            raise RuntimeError(f"clients failed: {proc.stderr[-2000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        sends = publisher.stats.send_s[sends_before:]
        published = publisher.stats.sent - sent0
        replaced = publisher.stats.replaced - replaced0
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        thread.join(30)
        daphne.terminate()
        try:
            daphne.wait(20)
        except subprocess.TimeoutExpired:
            daphne.kill()
    delivered = res.get("delivered", [])
    decided_at = timed.decided_at
    decision_ms = [(seen - decided_at[ts]) / 1e6 for ts, seen in res.get("seen", []) if ts in decided_at]
    expected = seconds * 1000 / PUBLISH_MS
    rows = [
        {
            "name": "clients (connected / asked)",
            "value": len(delivered) - len(res.get("errors", [])),
            "unit": "",
            "note": f"asked {clients}; all connected in {res.get('connect_s', float('nan')):.1f} s "
            f"({CONNECTS_AT_ONCE} handshakes at a time); errors: {res.get('errors', [])[:2]}",
        },
        {
            "name": "updates delivered per client, min",
            "value": min(delivered) if delivered else 0,
            "unit": "snapshots",
            "note": f"counted over {seconds:.0f} s once all were connected; {published} published in the phase "
            f"(incl. {res.get('connect_s', 0):.0f} s connecting; nominal {expected / seconds:.0f}/s)",
        },
        {
            "name": "updates delivered per client, median",
            "value": statistics.median(delivered) if delivered else 0,
            "unit": "snapshots",
        },
        {"name": "snapshot→browser latency p50", "value": _pct(res.get("snapshot_ms", []), 0.5), "unit": "ms"},
        {
            "name": "snapshot→browser latency p99",
            "value": _pct(res.get("snapshot_ms", []), 0.99),
            "unit": "ms",
            "target": f"< {P99_TARGET_MS:.0f}",
        },
        {
            "name": "decision→browser latency p50",
            "value": _pct(decision_ms, 0.5),
            "unit": "ms",
            "note": "end of the loop step that made the decision → first snapshot with it parsed; "
            f"{len(decision_ms)} (decision, client) pairs",
        },
        {
            "name": "decision→browser latency p99",
            "value": _pct(decision_ms, 0.99),
            "unit": "ms",
            "target": f"< {P99_TARGET_MS:.0f}",
        },
        {
            "name": "market event→browser latency p50 / p99",
            "value": _pct(res.get("event_ms", []), 0.5),
            "unit": "ms",
            "note": f"p99 {_pct(res.get('event_ms', []), 0.99):.1f} ms; the decision's event time → browser (adds "
            f"the loop's {LOOP_MS} ms polling and its step)",
        },
        {
            "name": "group_send (publisher thread) p50 / p99",
            "value": _pct([s * 1e3 for s in sends], 0.5),
            "unit": "ms",
            "note": f"p99 {_pct([s * 1e3 for s in sends], 0.99):.2f} ms; {published} sent, {replaced} "
            "replaced before sending (latest wins)",
        },
    ]
    for phase in ("without clients", "with clients"):
        steps, pubs = timed.step_ms.get(phase, []), timed.publish_ms.get(phase, [])
        decs = timed.decision_ms.get(phase, [])
        rows += [
            {
                "name": f"loop step p50 / p99 ({phase})",
                "value": _pct(steps, 0.5),
                "unit": "ms",
                "note": f"p99 {_pct(steps, 0.99):.2f} ms; {len(steps)} steps",
            },
            {
                "name": f"loop publish cost p50 / p99 ({phase})",
                "value": _pct(pubs, 0.5),
                "unit": "ms",
                "note": f"p99 {_pct(pubs, 0.99):.2f} ms; snapshot build + hand-over; {len(pubs)} publishes",
            },
            {
                "name": f"event→decision p50 / p99 ({phase})",
                "value": _pct(decs, 0.5),
                "unit": "ms",
                "note": f"p99 {_pct(decs, 0.99):.1f} ms; includes the {LOOP_MS} ms loop sleep; {len(decs)} decisions",
            },
        ]
    return rows


def _print(rows: list[dict]) -> None:
    from benchmarks.__main__ import _fmt

    header = ("suite", "measure", "value", "unit", "target", "note")
    table = [header] + [
        ("ws_fanout", r["name"], _fmt(r["value"]), r.get("unit", ""), r.get("target", ""), r.get("note", ""))
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print(
            " | ".join(
                str(c).rjust(w) if j == 2 else str(c).ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ws_fanout")
    ap.add_argument("--clients", type=int, default=int(os.environ.get("WS_CLIENTS", 100)))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("WS_SECONDS", 60)))
    ap.add_argument("--baseline-seconds", type=float, default=float(os.environ.get("WS_BASELINE_SECONDS", 20)))
    ap.add_argument("--as-clients", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--cookie", help=argparse.SUPPRESS)
    ap.add_argument("--origin", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not (1 <= args.clients <= 1000):
        ap.error(f"--clients must be 1..1000, got {args.clients}")
    if not (1 <= args.seconds <= 600):
        ap.error(f"--seconds must be 1..600, got {args.seconds}")
    if args.as_clients:
        out = asyncio.run(_clients_main(args.as_clients, args.cookie, args.origin, args.clients, args.seconds))
        print(json.dumps(out))
        return 0
    rows = run(args.clients, args.seconds, args.baseline_seconds)
    _print(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
