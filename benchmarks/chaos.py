"""`make chaos`: faults against the real stack, with numbers.

Starts a private stack in a temporary directory — its own embedded PostgreSQL and Redis (so they can be restarted
without touching any server the user runs), daphne, a quoting worker, a periodic worker and beat — and runs:

1. kill switch: HTTP POST of the halt button → all of the session's paper orders cancelled, N trials (p50, p99);
2. SIGKILL of the quoting worker → orders cancelled by the dead-man's switch; a new worker resumes the session;
3. Redis restart → workers and web reconnect, quoting continues, the kill switch (in PostgreSQL) still holds;
4. PostgreSQL restart → quotes pulled while it is away, buffered rows written on recovery, quoting resumes.

Prints one table: fault, time to safe state, orders left open, fills lost, rows lost.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
CHAOS_PASSWORD = "chaos-password-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond: Callable[[], bool], timeout_s: float, poll_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll_s)
    return cond()


class Stack:
    def __init__(self, trials: int) -> None:
        self.trials = trials
        self.tmp = Path(tempfile.mkdtemp(prefix="mm-chaos-"))
        os.environ["MM_VAR_DIR"] = str(self.tmp / "var")
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("REDIS_URL", None)
        from mmweb import embedded

        self.embedded = embedded
        os.environ["DATABASE_URL"] = embedded.ensure_postgres()
        os.environ["REDIS_URL"] = embedded.ensure_redis()
        os.environ["DJANGO_SETTINGS_MODULE"] = "mmweb.settings"
        os.environ.setdefault("MM_LOOP_INTERVAL_MS", "50")
        self.env = dict(os.environ)
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.contrib.auth import get_user_model

        self.user = get_user_model().objects.create_user(
            "chaos", password="chaos-password-1", is_superuser=True, is_staff=True
        )

    # --- processes ------------------------------------------------------------------------------

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(
            cmd,
            cwd=BASE_DIR,
            env=self.env,
            stdout=(self.logs / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = p
        return p

    def start_worker(self) -> None:
        log = self.logs / "worker-quoting.log"
        before = log.read_text(errors="replace").count("ready.") if log.exists() else 0
        self.spawn(
            "worker-quoting",
            [
                PY,
                "-m",
                "celery",
                "-A",
                "mmweb",
                "worker",
                "-Q",
                "quoting",
                "-c",
                "2",
                "--prefetch-multiplier=1",
                "-n",
                f"quoting-{time.time_ns()}@%h",
                "-l",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
        )
        assert _wait(lambda: log.read_text(errors="replace").count("ready.") > before, 60, 0.1), "worker not ready"

    def start(self) -> None:
        self.spawn("daphne", [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "mmweb.asgi:application"])
        self.start_worker()
        self.spawn(
            "worker-periodic",
            [
                PY,
                "-m",
                "celery",
                "-A",
                "mmweb",
                "worker",
                "-Q",
                "periodic",
                "-c",
                "1",
                "-n",
                f"periodic-{os.getpid()}@%h",
                "-l",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
        )
        self.spawn(
            "beat", [PY, "-m", "celery", "-A", "mmweb", "beat", "-l", "INFO", "-s", str(self.tmp / "beat-schedule")]
        )
        assert _wait(lambda: self._http_ok("/login/"), 60, 0.1), "daphne not up"

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        from django.db import connections

        connections.close_all()
        self.embedded.stop_postgres()
        self.embedded.stop_redis()

    # --- HTTP as an operator ----------------------------------------------------------------------

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def login(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        html = self.opener.open(self.url + "/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        data = urllib.parse.urlencode(
            {"username": "chaos", "password": CHAOS_PASSWORD, "csrfmiddlewaretoken": token}
        ).encode()
        self.opener.open(urllib.request.Request(self.url + "/login/", data=data, headers={"Referer": self.url}))

    def post_halt(self, session_id: int, reason: str) -> int:
        csrf = next(c.value for c in self.jar if c.name == "csrftoken")
        req = urllib.request.Request(
            f"{self.url}/sessions/{session_id}/halt/",
            data=urllib.parse.urlencode({"reason": reason}).encode(),
            headers={"X-CSRFToken": csrf, "Referer": self.url, "HX-Request": "true"},
        )
        with self.opener.open(req) as r:
            return r.status


def _open_orders(session_id: int) -> int:
    from apps.trading.models import Order

    return Order.objects.filter(session_id=session_id, status__in=Order.OPEN_STATUSES).count()


def _new_session(seed: int):
    from apps.control.services import Actor, create_paper_session

    params = {"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}}
    return create_paper_session(Actor(label="chaos"), name=f"chaos-{seed}", params=params, seed=seed)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def kill_switch_latency(stack: Stack) -> list[dict]:
    from apps.control.services import Actor, rearm_session, resume_session
    from apps.trading.models import OrderEventRecord

    session = _new_session(101)
    stack.login()
    op = Actor.of(stack.user)
    http_ms, venue_ms = [], []
    left_open = 0
    for i in range(stack.trials):
        assert _wait(lambda: _open_orders(session.pk) > 0, 60), "no resting orders to cancel"
        t0 = time.time_ns()
        assert stack.post_halt(session.pk, f"trial {i}") == 200
        ok = _wait(lambda: _open_orders(session.pk) == 0, 10)
        t1 = time.time_ns()
        left_open += 0 if ok else _open_orders(session.pk)
        http_ms.append((t1 - t0) / 1e6)
        ev = OrderEventRecord.objects.filter(session=session, kind="emergency_cancel_all", ts_ns__gt=t0).first()
        if ev is not None:
            venue_ms.append((ev.ts_ns - t0) / 1e6)
        rearm_session(op, session.pk, "chaos trial")
        resume_session(op, session.pk, "chaos trial")
    rows = [
        {
            "name": f"kill switch: click → orders cancelled in DB, p50 ({stack.trials} trials)",
            "value": statistics.median(http_ms),
            "unit": "ms",
        },
        {
            "name": "kill switch: click → orders cancelled in DB, p99",
            "value": _pct(http_ms, 0.99),
            "unit": "ms",
            "target": "< 500 ms",
        },
        {"name": "kill switch: orders left open after 10 s", "value": left_open, "unit": "orders", "target": "0"},
    ]
    if venue_ms:
        rows.append({"name": "kill switch: click → venue cancel-all, p99", "value": _pct(venue_ms, 0.99), "unit": "ms"})
    from apps.control.services import stop_session

    stop_session(op, session.pk, "end of trials")
    return rows


def _fills_logged(stack: Stack, session_id: int) -> set[str]:
    text = (stack.logs / "worker-quoting.log").read_text(errors="replace")
    return set(re.findall(rf"session {session_id} fill (\S+/\S+) side", text))


def _fills_in_db(session_id: int) -> set[str]:
    from apps.trading.models import FillRecord

    return set(FillRecord.objects.filter(session_id=session_id).values_list("fill_id", flat=True))


def _trade_gaps(session_id: int) -> int:
    """Simulator trade ids are consecutive per loop run ("<run>-<n>"): count the missing ones."""
    from apps.marketdata.models import TradeTick
    from apps.trading.models import TradingSession

    inst = TradingSession.objects.get(pk=session_id).instrument_id
    runs: dict[str, list[int]] = {}
    for tid in TradeTick.objects.filter(instrument_id=inst).values_list("trade_id", flat=True):
        run, _, n = tid.rpartition("-")
        runs.setdefault(run, []).append(int(n))
    return sum(max(ns) - len(set(ns)) for ns in runs.values())


def _tail_trades_missing(session_id: int, until_ns: int) -> tuple[int, int]:
    """(expected, missing): the simulator is deterministic for a seed and start time, so the trades the first loop
    run must have recorded up to ``until_ns`` can be regenerated and compared with the database."""
    from apps.control.models import AuditEvent
    from apps.engine.market.events import Trade
    from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams
    from apps.marketdata.models import TradeTick
    from apps.trading.models import TradingSession

    session = TradingSession.objects.get(pk=session_id)
    start = AuditEvent.objects.filter(session=session, action="loop.start").order_by("ts").first()
    sp = SimulatorParams(**{**session.params.get("sim", {}), "start_ts_ns": start.detail["sim_start_ns"]})
    expected = sum(isinstance(e, Trade) for e in MarketSimulator(sp, seed=session.seed).step_until(until_ns))
    stored = TradeTick.objects.filter(
        instrument_id=session.instrument_id,
        trade_id__startswith=start.detail["trade_id_prefix"],
        ts_local_ns__lte=until_ns,
    ).count()
    return expected, expected - stored


def worker_sigkill(stack: Stack) -> list[dict]:
    from apps.control.models import AuditEvent
    from apps.trading.models import FillRecord

    session = _new_session(202)
    assert _wait(
        lambda: FillRecord.objects.filter(session=session).count() >= 3 and _open_orders(session.pk) > 0, 90
    ), "session never filled"
    time.sleep(1.0)
    worker = stack.procs["worker-quoting"]
    t0 = time.time_ns()
    os.killpg(worker.pid, signal.SIGKILL)
    # the loop steps every 50 ms: everything up to 150 ms before the kill had certainly been processed
    expected_trades, missing_trades = None, None
    worker.wait()
    safe = _wait(
        lambda: (
            _open_orders(session.pk) == 0 and AuditEvent.objects.filter(session=session, action="session.dead").exists()
        ),
        30,
        0.02,
    )
    t_safe = (time.time_ns() - t0) / 1e9
    left = _open_orders(session.pk)
    logged = _fills_logged(stack, session.pk)
    stack.start_worker()
    resumed = _wait(lambda: AuditEvent.objects.filter(session=session, action="loop.start").count() >= 2, 60, 0.1)
    # the new loop replayed the dead one's write-ahead journal before it started; count what is stored now
    in_db = _fills_in_db(session.pk)
    expected_trades, missing_trades = _tail_trades_missing(session.pk, t0 - 150_000_000)
    recovered = AuditEvent.objects.filter(session=session, action="loop.recovered").first()
    start = AuditEvent.objects.filter(session=session, action="loop.start").order_by("-ts").first()
    db_q = sum(s * z for s, z in FillRecord.objects.filter(session=session).values_list("side", "size"))
    resumed_ok = resumed and abs(start.detail.get("resumed_position", 1e9) - db_q) < 1e-9
    dup = FillRecord.objects.filter(session=session).count() - len(in_db)
    from apps.control.services import Actor, stop_session

    stop_session(Actor(label="chaos"), session.pk, "end")
    return [
        {
            "name": "worker SIGKILL → orders cancelled (dead-man's switch)",
            "value": t_safe,
            "unit": "s",
            "target": "< 10 s",
            "note": "safe" if safe else "NOT SAFE",
        },
        {"name": "worker SIGKILL: orders left open", "value": left, "unit": "orders", "target": "0"},
        {
            "name": "worker SIGKILL: fills logged by the loop but not in DB",
            "value": len(logged - in_db),
            "unit": "fills",
            "target": "0",
            "note": f"{len(logged)} fills logged; duplicates in DB: {dup}",
        },
        {
            "name": "worker SIGKILL: rows replayed from the dead loop's journal",
            "value": sum(recovered.detail.values()) if recovered else 0,
            "unit": "rows",
        },
        {"name": "worker SIGKILL: resumed with position rebuilt from fills", "value": int(resumed_ok), "unit": "1=yes"},
        {
            "name": "worker SIGKILL: trade ticks missing (gaps in trade ids)",
            "value": _trade_gaps(session.pk),
            "unit": "rows",
            "target": "0",
        },
        {
            "name": "worker SIGKILL: trade ticks the dead loop saw but never stored",
            "value": missing_trades,
            "unit": "rows",
            "target": "0",
            "note": f"of {expected_trades} regenerated from the seeded simulator",
        },
    ]


def redis_restart(stack: Stack) -> list[dict]:
    from apps.control.services import Actor, halt_session, stop_session
    from apps.trading.models import QuoteDecisionRecord, TradingSession

    session = _new_session(303)
    assert _wait(lambda: _open_orders(session.pk) > 0, 60)
    stack.embedded.stop_redis()
    t0 = time.time_ns()
    time.sleep(2.0)
    # the kill switch lives in PostgreSQL: it still works while Redis is down
    halt_session(Actor(label="chaos"), session.pk, "halt during redis outage")
    halted = _wait(lambda: _open_orders(session.pk) == 0, 5)
    left_after_halt = _open_orders(session.pk)
    t_safe = (time.time_ns() - t0) / 1e9 - 2.0
    stack.embedded.ensure_redis()
    # a new session's task must reach a worker through the restarted broker
    s2 = _new_session(304)
    reached = _wait(lambda: TradingSession.objects.get(pk=s2.pk).lease_owner != "", 60, 0.1)
    flowing = _wait(lambda: QuoteDecisionRecord.objects.filter(session=s2).exists(), 60, 0.1)
    still_halted = TradingSession.objects.get(pk=session.pk).status == "halted"
    stop_session(Actor(label="chaos"), session.pk, "end")
    stop_session(Actor(label="chaos"), s2.pk, "end")
    return [
        {
            "name": "Redis restart: kill switch during outage → orders cancelled",
            "value": max(t_safe, 0.0),
            "unit": "s",
            "note": "halted" if halted else "NOT halted",
        },
        {"name": "Redis restart: session still HALTED after restart", "value": int(still_halted), "unit": "1=yes"},
        {
            "name": "Redis restart: new task reached a worker after restart",
            "value": int(reached and flowing),
            "unit": "1=yes",
        },
        {"name": "Redis restart: trade ticks missing", "value": _trade_gaps(session.pk), "unit": "rows", "target": "0"},
        {"name": "Redis restart: orders left open after the halt", "value": left_after_halt, "unit": "orders"},
        {
            "name": "Redis restart: fills logged but not in DB",
            "value": len(_fills_logged(stack, session.pk) - _fills_in_db(session.pk)),
            "unit": "fills",
            "target": "0",
        },
    ]


def postgres_restart(stack: Stack) -> list[dict]:
    from django.db import connections

    from apps.control.services import Actor, stop_session
    from apps.trading.models import OrderEventRecord

    session = _new_session(404)
    assert _wait(lambda: _open_orders(session.pk) > 0, 60)
    time.sleep(1.0)
    connections.close_all()
    t0 = time.time_ns()
    stack.embedded.stop_postgres()
    time.sleep(3.0)
    stack.embedded.ensure_postgres()
    connections.close_all()
    back = _wait(lambda: OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=t0).exists(), 60, 0.1)
    pulled = OrderEventRecord.objects.filter(session=session, kind="emergency_cancel_all", ts_ns__gt=t0).first()
    t_safe = (pulled.ts_ns - t0) / 1e9 if pulled else float("nan")
    time.sleep(2.0)
    stop_session(Actor(label="chaos"), session.pk, "end")
    _wait(lambda: _open_orders(session.pk) == 0, 10)
    time.sleep(1.0)
    logged, in_db = _fills_logged(stack, session.pk), _fills_in_db(session.pk)
    return [
        {"name": "PostgreSQL restart: quotes pulled after the DB went away", "value": t_safe, "unit": "s"},
        {"name": "PostgreSQL restart: quoting resumed after recovery", "value": int(back), "unit": "1=yes"},
        {
            "name": "PostgreSQL restart: trade ticks missing",
            "value": _trade_gaps(session.pk),
            "unit": "rows",
            "target": "0",
        },
        {
            "name": "PostgreSQL restart: fills logged but not in DB",
            "value": len(logged - in_db),
            "unit": "fills",
            "target": "0",
        },
        {
            "name": "PostgreSQL restart: orders left open after stop",
            "value": _open_orders(session.pk),
            "unit": "orders",
            "target": "0",
        },
    ]


def feed_disconnect(stack: Stack) -> list[dict]:
    from apps.control.services import Actor, create_paper_session, stop_session
    from apps.trading.models import OrderEventRecord, RiskEventRecord

    params = {
        "strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05},
        "feed": {"outages": [[25.0, 3.0]], "backoff": {"base_s": 0.25, "cap_s": 2.0}},
    }
    session = create_paper_session(Actor(label="chaos"), name="chaos-feed", params=params, seed=505)
    ok = _wait(lambda: RiskEventRecord.objects.filter(session=session, rule="feed_reconnect").exists(), 90, 0.1)
    down = RiskEventRecord.objects.filter(session=session, rule="feed_disconnect").first()
    up = RiskEventRecord.objects.filter(session=session, rule="feed_reconnect").first()
    pulled = (
        OrderEventRecord.objects.filter(session=session, kind="emergency_cancel_all", ts_ns__gte=down.ts_ns)
        .order_by("ts_ns")
        .first()
        if down
        else None
    )
    requoted = _wait(
        lambda: (
            up is not None
            and OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=up.ts_ns).exists()
        ),
        10,
        0.1,
    )
    during = (
        OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=down.ts_ns, ts_ns__lt=up.ts_ns).count()
        if down and up
        else -1
    )
    stop_session(Actor(label="chaos"), session.pk, "end")
    _wait(lambda: _open_orders(session.pk) == 0, 10)
    time.sleep(1.0)
    return [
        {"name": "feed disconnect: orders left open after stop", "value": _open_orders(session.pk), "unit": "orders"},
        {
            "name": "feed disconnect: fills logged but not in DB",
            "value": len(_fills_logged(stack, session.pk) - _fills_in_db(session.pk)),
            "unit": "fills",
        },
        {
            "name": "feed disconnect → quotes pulled",
            # nothing resting at the drop means nothing to pull: 0 ms
            "value": (pulled.ts_ns - down.ts_ns) / 1e6
            if pulled
            else (0.0 if down and down.values.get("open_orders_at_disconnect") == 0 else float("nan")),
            "unit": "ms",
            "note": f"{down.values.get('open_orders_at_disconnect')} orders open at the drop" if down else "no drop",
        },
        {
            "name": "feed disconnect: reconnect after a 3 s outage (backoff + jitter)",
            "value": (up.ts_ns - down.ts_ns) / 1e9 if ok and down else float("nan"),
            "unit": "s",
        },
        {
            "name": "feed disconnect: orders sent while the feed was down",
            "value": during,
            "unit": "orders",
            "target": "0",
        },
        {"name": "feed disconnect: quoting resumed after resync", "value": int(requoted), "unit": "1=yes"},
    ]


def run(trials: int = 50) -> list[dict]:
    stack = Stack(trials)
    rows: list[dict] = []
    try:
        stack.start()
        for scenario in (kill_switch_latency, worker_sigkill, redis_restart, postgres_restart, feed_disconnect):
            try:
                rows += scenario(stack)
            except Exception as exc:  # noqa: BLE001 - report the scenario as failed and go on
                rows.append({"name": f"{scenario.__name__} FAILED", "value": "", "unit": "", "note": repr(exc)[:120]})
    finally:
        stack.stop()
    return rows


# The issue's table: one line per fault. Each cell names the detailed row it comes from.
SUMMARY = (
    (
        "kill switch (HTTP click)",
        "kill switch: click → orders cancelled in DB, p99",
        1e-3,
        "kill switch: orders left open after 10 s",
        None,
        None,
    ),
    (
        "quoting worker SIGKILL",
        "worker SIGKILL → orders cancelled (dead-man's switch)",
        1.0,
        "worker SIGKILL: orders left open",
        "worker SIGKILL: fills logged by the loop but not in DB",
        (
            "worker SIGKILL: trade ticks the dead loop saw but never stored",
            "worker SIGKILL: trade ticks missing (gaps in trade ids)",
        ),
    ),
    (
        "Redis restart",
        "Redis restart: kill switch during outage → orders cancelled",
        1.0,
        "Redis restart: orders left open after the halt",
        "Redis restart: fills logged but not in DB",
        ("Redis restart: trade ticks missing",),
    ),
    (
        "PostgreSQL restart",
        "PostgreSQL restart: quotes pulled after the DB went away",
        1.0,
        "PostgreSQL restart: orders left open after stop",
        "PostgreSQL restart: fills logged but not in DB",
        ("PostgreSQL restart: trade ticks missing",),
    ),
    (
        "feed disconnect",
        "feed disconnect → quotes pulled",
        1e-3,
        "feed disconnect: orders left open after stop",
        "feed disconnect: fills logged but not in DB",
        None,
    ),
)


def summary_lines(rows: list[dict]) -> list[str]:
    by = {
        r["name"].split(" (")[0]
        if r["name"].startswith("kill switch: click → orders cancelled in DB, p50")
        else r["name"]: r["value"]
        for r in rows
    }

    def cell(name: str | None, scale: float = 1.0, unit: str = "") -> str:
        if name is None:
            return "n/a"
        v = by.get(name)
        if v is None or v == "":
            return "?"
        return f"{v * scale:.3f} s" if unit == "s" else str(v)

    out = [
        f"{'fault':<26} | {'time to safe state':>18} | {'orders left open':>16} | {'fills lost':>10} | rows lost",
        "-" * 92,
    ]
    for fault, t, scale, left, fills, ticks in SUMMARY:
        lost = "n/a" if ticks is None else str(sum(int(by.get(n) or 0) for n in ticks))
        out.append(f"{fault:<26} | {cell(t, scale, 's'):>18} | {cell(left):>16} | {cell(fills):>10} | {lost}")
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    trials = int(args[0]) if args else 50
    from benchmarks.__main__ import _fmt

    rows = run(trials)
    print("\n".join(summary_lines(rows)))
    print()
    if "--json" in sys.argv:
        import json

        print("CHAOS-JSON " + json.dumps(rows, default=str))
    w = max(len(r["name"]) for r in rows)
    print(f"{'fault / measure'.ljust(w)} | {'value':>10} | unit     | target | note")
    print("-" * (w + 50))
    for r in rows:
        print(
            f"{r['name'].ljust(w)} | {_fmt(r['value']):>10} | {r.get('unit', ''):<8} | {r.get('target', ''):<6} | "
            f"{r.get('note', '')}"
        )
    sys.exit(1 if any("FAILED" in r["name"] for r in rows) else 0)
