"""A local Binance look-alike on 127.0.0.1 for tests and benchmarks: combined-stream WebSocket + REST depth.

It replays recorded raw stream messages (the hftbacktest collector files under ../shared/data, see their
MANIFEST.md), in recorded order, as one market shared by every client: the replay starts when the first client
connects and goes on whether or not anyone is listening (messages sent while a client is away are lost to it, as on
the real venue). The server keeps its own book (the recorded REST snapshot, then every diff as it is sent), so
``GET /fapi/v1/depth`` (or ``/api/v3/depth``) answers a snapshot consistent with the stream at that moment; it
starts at the first diff that bridges the recorded snapshot (USD-M ``U <= lastUpdateId <= u``, spot
``U <= lastUpdateId + 1 <= u``). A spot recording (its diffs carry no ``pu``) is served as spot: the REST snapshot
has no ``E``/``T``, as Binance's ``/api/v3/depth`` has none; every message is the recorded one, byte for byte.

Commands (Python, from the test's thread): :meth:`BinanceReplayServer.drop_diff` (a diff's ``u`` that will not be
sent, though the market moves by it: a gap), :meth:`disconnect` (close every client: ``1001 going away``, or abort
the TCP connection), :meth:`refuse` (answer WebSocket upgrades with 503 for a while), ``speed`` (recorded time /
replay time; 0 = as fast as the socket takes it).
"""

from __future__ import annotations

import asyncio
import gzip
import http
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from websockets.asyncio.server import broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from apps.engine.market.book import OrderBook
from apps.engine.market.events import DepthSnapshot, DepthUpdate
from apps.marketdata.parsers.binance_raw import decode_message
from apps.marketdata.parsers.common import RecentIds


@dataclass
class Message:
    local_ns: int
    symbol: str  # upper case
    kind: str  # "trade" | "bookTicker" | "depth" | other stream suffix
    data: bytes  # the payload JSON, as recorded
    diff: DepthUpdate | None = None


@dataclass
class Recording:
    symbol: str
    snapshot: DepthSnapshot
    messages: list[Message]
    spot: bool = False  # a spot recording: diffs chain by U == previous u + 1 (no pu), snapshot without E/T

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.messages:
            out[m.kind] = out.get(m.kind, 0) + 1
        return out


def load_recording(path: Path, max_messages: int | None = None) -> Recording:
    """The recording's REST snapshot and the stream messages from the first diff that bridges it on (spot or USD-M,
    told apart by the diffs: spot's carry no ``pu``)."""
    lines: list[tuple[int, dict]] = []
    snapshot: DepthSnapshot | None = None
    recent = RecentIds(10)
    with gzip.open(path, "rt") as fh:
        for line in fh:
            ts, _, body = line.partition(" ")
            msg = orjson.loads(body)
            if "lastUpdateId" in msg and snapshot is None:
                snapshot = decode_message(msg, int(ts), recent)
            elif "stream" in msg:
                lines.append((int(ts), msg))
            if snapshot is not None and max_messages is not None and len(lines) > 4 * max_messages + 1000:
                break
    if snapshot is None:
        raise ValueError(f"{path}: no REST depth snapshot in the recording")
    diffs = [msg["data"] for _, msg in lines if msg["data"].get("e") == "depthUpdate"]
    spot = bool(diffs) and "pu" not in diffs[0]
    target = snapshot.last_update_id + 1 if spot else snapshot.last_update_id
    start = None
    for i, (_, msg) in enumerate(lines):
        d = msg["data"]
        if d.get("e") == "depthUpdate" and d["U"] <= target <= d["u"]:
            start = i
            break
    if start is None:
        raise ValueError(f"{path}: no diff bridges the snapshot's lastUpdateId {snapshot.last_update_id}")
    out: list[Message] = []
    symbol = ""
    for ts, msg in lines[start:]:
        stream: str = msg["stream"]
        low, _, suffix = stream.partition("@")
        symbol = low.upper()
        kind = "depth" if suffix.startswith("depth") else suffix
        diff = None
        if kind == "depth":
            diff = decode_message(msg, ts, recent)
        out.append(Message(ts, symbol, kind, orjson.dumps(msg["data"]), diff))
        if max_messages is not None and len(out) >= max_messages:
            break
    return Recording(symbol, snapshot, out, spot)


def _px(x: float) -> str:
    return repr(x)


@dataclass
class _Client:
    ws: object
    wants: dict[tuple[str, str], str]  # (SYMBOL, kind) -> the stream name the client asked for


@dataclass
class ServerStats:
    sent: dict[str, int] = field(default_factory=dict)  # kind -> messages replayed (sent or not)
    dropped: list[int] = field(default_factory=list)  # u of the diffs withheld
    connections: int = 0
    refused: int = 0
    rest_requests: int = 0


class BinanceReplayServer:
    """WebSocket + HTTP on 127.0.0.1 replaying :class:`Recording` s (several symbols merge by receive time)."""

    def __init__(
        self,
        recordings: Iterable[Recording],
        *,
        speed: float = 0.0,
        spot: bool | None = None,
        restamp: bool = False,
        skew_ms: float = 0.0,
        snapshot_after_replay: bool = False,
    ) -> None:
        self.recordings = {r.symbol: r for r in recordings}
        if spot is None:  # from the recordings (one market per server: spot and USD-M do not mix)
            spot = any(r.spot for r in self.recordings.values())
        merged = [m for r in self.recordings.values() for m in r.messages]
        merged.sort(key=lambda m: m.local_ns)
        self.messages = merged
        self.speed = speed
        self.spot = spot
        # restamp: exchange times ("E", "T") moved to the wall clock at send time, less each message's recorded
        # exchange-to-receive delay, as a live venue's would be (a quoting loop's clock-skew rule checks them)
        self.restamp = restamp
        # skew_ms: the venue's clock runs this far ahead of ours (restamped stamps only; may be changed while the
        # server runs): a client's measured offset (local - exchange) comes out about -skew_ms + the send delay
        if skew_ms and not restamp:
            raise ValueError("skew_ms needs restamp=True (the recorded stamps are not moved otherwise)")
        self.skew_ms = skew_ms
        # snapshot_after_replay: the REST snapshot is answered only once every message has been sent, so it is the
        # book after the last diff and no later diff bridges it (a market that goes quiet right after the request)
        self.snapshot_after_replay = snapshot_after_replay
        self.books: dict[str, OrderBook] = {}
        self.book_ts: dict[str, tuple[int, int]] = {}
        for sym, rec in self.recordings.items():
            book = OrderBook()
            book.apply_snapshot(rec.snapshot)
            self.books[sym] = book
            self.book_ts[sym] = (rec.snapshot.ts_exch_ns, rec.snapshot.last_update_id)
        self.stats = ServerStats()
        self.port = 0
        self.cursor = 0  # messages replayed so far
        self.done = threading.Event()
        self._clients: list[_Client] = []
        self._drop: set[int] = set()
        self._refuse_until = 0.0
        self._started: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._replayed: asyncio.Event | None = None

    # --- control (from any thread) --------------------------------------------------------------

    @property
    def base_ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def base_http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BinanceReplayServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="binance-replay", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("replay server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    def drop_diff(self, last_update_id: int) -> None:
        """Do not send the diff whose ``u`` is this (the server's book still moves by it)."""
        self._drop.add(last_update_id)

    def disconnect(self, *, abort: bool = False) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._disconnect(abort), self._loop).result(5)

    def refuse(self, seconds: float) -> None:
        """Refuse WebSocket upgrades (HTTP 503) for ``seconds`` from now."""
        self._refuse_until = time.monotonic() + seconds

    @property
    def n_clients(self) -> int:
        return len(self._clients)

    # --- the server's loop ----------------------------------------------------------------------

    async def _disconnect(self, abort: bool) -> None:
        for c in list(self._clients):
            if abort:
                c.ws.transport.abort()
            else:
                await c.ws.close(1001, "going away")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._replayed = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._http, compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            replay = asyncio.ensure_future(self._replay())
            await self._stop.wait()
            replay.cancel()

    async def _http(self, connection, request):
        url = urllib.parse.urlsplit(request.path)
        if url.path in ("/fapi/v1/depth", "/api/v3/depth"):
            self.stats.rest_requests += 1
            if self.snapshot_after_replay:
                assert self._replayed is not None
                await self._replayed.wait()
            q = dict(urllib.parse.parse_qsl(url.query))
            sym = q.get("symbol", "")
            if sym not in self.books:
                return self._json(http.HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."})
            return self._json(http.HTTPStatus.OK, self._snapshot(sym, int(q.get("limit", "1000"))))
        if url.path == "/stream" or url.path.startswith("/ws"):
            if time.monotonic() < self._refuse_until:
                self.stats.refused += 1
                return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "try later\n")
            return None
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")

    @staticmethod
    def _json(status: http.HTTPStatus, obj: object) -> Response:
        body = orjson.dumps(obj)
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return Response(status.value, status.phrase, headers, body)

    def _snapshot(self, sym: str, limit: int) -> dict:
        book = self.books[sym]
        exch_ns, last_u = self.book_ts[sym]
        out: dict = {"lastUpdateId": last_u}
        if not self.spot:
            ms = self._now_ms() if self.restamp else exch_ns // 1_000_000
            out |= {"E": ms, "T": ms}
        out["bids"] = [[_px(p), _px(s)] for p, s in book.bids(limit)]
        out["asks"] = [[_px(p), _px(s)] for p, s in book.asks(limit)]
        return out

    async def _handler(self, ws) -> None:
        url = urllib.parse.urlsplit(ws.request.path)
        names = dict(urllib.parse.parse_qsl(url.query)).get("streams", "")
        wants: dict[tuple[str, str], str] = {}
        for name in filter(None, names.split("/")):
            low, _, suffix = name.partition("@")
            kind = "depth" if suffix.startswith("depth") else suffix
            wants[(low.upper(), kind)] = name
        client = _Client(ws, wants)
        self._clients.append(client)
        self.stats.connections += 1
        assert self._started is not None
        self._started.set()
        try:
            async for raw in ws:  # SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS
                req = orjson.loads(raw)
                if req.get("method") == "SUBSCRIBE":
                    for name in req.get("params", []):
                        low, _, suffix = name.partition("@")
                        wants[(low.upper(), "depth" if suffix.startswith("depth") else suffix)] = name
                await ws.send(orjson.dumps({"result": None, "id": req.get("id")}).decode())
        except Exception:  # noqa: BLE001 - a client that goes away mid-read
            pass
        finally:
            self._clients.remove(client)

    async def _replay(self) -> None:
        assert self._started is not None
        await self._started.wait()
        t0 = time.monotonic()
        first = self.messages[0].local_ns if self.messages else 0
        for i, m in enumerate(self.messages):
            if self.speed > 0:
                due = t0 + (m.local_ns - first) / 1e9 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 64 == 0:
                await asyncio.sleep(0)
            self.stats.sent[m.kind] = self.stats.sent.get(m.kind, 0) + 1
            send = True
            if m.diff is not None:
                self.books[m.symbol].apply_update(m.diff)
                self.book_ts[m.symbol] = (m.diff.ts_exch_ns, m.diff.last_update_id)
                if m.diff.last_update_id in self._drop:
                    self.stats.dropped.append(m.diff.last_update_id)
                    send = False
            if send:
                data = self._restamped(m) if self.restamp else m.data
                by_name: dict[str, list] = {}
                for c in self._clients:
                    name = c.wants.get((m.symbol, m.kind))
                    if name is not None:
                        by_name.setdefault(name, []).append(c.ws)
                for name, conns in by_name.items():
                    broadcast(conns, (b'{"stream":"%s","data":%s}' % (name.encode(), data)).decode())
            self.cursor = i + 1
        assert self._replayed is not None
        self._replayed.set()
        self.done.set()

    def _now_ms(self) -> int:
        """The venue's clock, ms: the wall clock plus the configured skew."""
        return round(time.time_ns() / 1_000_000 + self.skew_ms)

    def _restamped(self, m: Message) -> bytes:
        data = orjson.loads(m.data)
        sent_ms = data.get("E") if isinstance(data.get("E"), int) else m.local_ns // 1_000_000
        delay_ms = max(0, m.local_ns // 1_000_000 - sent_ms)  # the recorder's clock ran behind at times: no < 0
        shift_ms = self._now_ms() - delay_ms - sent_ms
        for key in ("E", "T"):
            if isinstance(data.get(key), int):
                data[key] += shift_ms
        return orjson.dumps(data)
