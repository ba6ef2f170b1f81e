"""A local Hyperliquid-protocol server for tests: info + exchange over HTTP and the WebSocket, on 127.0.0.1.

Built from the documented message shapes and the real recorded sample (``l2Book`` and ``trades`` lines of
``hftbacktest-hyperliquid-btc-20250126-tiny``): the book it serves is the sample's first snapshot, and
:meth:`HyperliquidServer.publish_sample` replays its market messages to subscribers.

Matching state is tiny and driven by the test: orders rest (``Gtc``/``Alo``), ``Ioc`` takes the served book's best
level, and resting orders fill only when the test calls :meth:`fill` (partial fills included). It rejects what the
venue rejects, with the venue's messages: a price off the tick rules, a size off szDecimals, an ``Alo`` that would
cross, an ``Ioc`` with nothing to match, insufficient margin, a bad signature or a reused nonce. It can drop every
WebSocket connection and refuse new ones (:meth:`drop_connections`), and it keeps the ``scheduleCancel`` time (the
test fires it with :meth:`fire_scheduled_cancel`). Exchange requests are checked with the SDK's signature recovery.

``clock_skew_ms`` sets the venue's clock that many ms ahead of ours (negative: behind): every ``time`` it stamps
(books, trades, fills, order updates, funding) and every time it checks (the scheduled cancel) is on that clock.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hyperliquid.utils.signing import recover_agent_or_user_from_l1_action
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

UNIVERSE = [{"name": "BTC", "szDecimals": 5, "maxLeverage": 40}, {"name": "ETH", "szDecimals": 4, "maxLeverage": 25}]
LEVERAGE = 10.0


def _num(x: float) -> str:
    return format(Decimal(repr(float(x))).normalize(), "f")


class HyperliquidServer:
    def __init__(
        self, sample: Path, *, signer: str, user: str, account_value: float = 10_000.0, clock_skew_ms: float = 0.0
    ) -> None:
        self.clock_skew_ms = clock_skew_ms
        self.signer = signer.lower()
        self.user = user
        self.account_value = account_value
        self.lock = threading.RLock()
        self.sample: list[dict] = []
        with gzip.open(sample, "rt") as fh:
            for line in fh:
                self.sample.append(json.loads(line.partition(" ")[2]))
        first_book = next(m for m in self.sample if m["channel"] == "l2Book")
        self.book = first_book["data"]
        self.orders: dict[int, dict] = {}  # oid -> order (open only)
        self.fills: list[dict] = []
        self.position = 0.0
        self.entry_px = 0.0  # average entry of the position (clearinghouseState entryPx)
        self.funding: list[dict] = []  # userFunding entries, oldest first (pay_funding)
        self.next_oid = 1000
        self.next_tid = 5000
        self.last_nonce = 0
        self.scheduled_cancel_ms: int | None = None
        self.schedule_calls: list[dict] = []
        self.exchange_log: list[dict] = []
        self.clients: list = []  # [ws, set(subscription keys)]
        self.refusing = False
        self.lose_next_answer = False  # apply the next exchange request, then drop the connection unanswered
        self.connects = 0
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._ws = serve(self._ws_handler, "127.0.0.1", 0, process_request=self._process_request)
        self._threads = [
            threading.Thread(target=self._http.serve_forever, daemon=True),
            threading.Thread(target=self._ws.serve_forever, daemon=True),
        ]

    def _ms(self) -> int:
        """The venue's clock (ms): ours plus ``clock_skew_ms``."""
        return int(time.time() * 1000 + self.clock_skew_ms)

    # --- lifecycle -----------------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws.socket.getsockname()[1]}/ws"

    def start(self) -> HyperliquidServer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._ws.shutdown()
        self._http.shutdown()
        self._http.server_close()

    # --- test controls -------------------------------------------------------------------------------------------
    def best(self) -> tuple[float, float, float, float]:
        bids, asks = self.book["levels"]
        return float(bids[0]["px"]), float(bids[0]["sz"]), float(asks[0]["px"]), float(asks[0]["sz"])

    def drop_connections(self, refuse: bool = True) -> None:
        """Close every WebSocket; with ``refuse`` new connections get HTTP 503 until :meth:`accept`."""
        with self.lock:
            self.refusing = refuse
            clients, self.clients = self.clients, []
        for ws, _ in clients:
            ws.close()

    def accept(self) -> None:
        self.refusing = False

    def connected_clients(self) -> int:
        with self.lock:
            return len(self.clients)

    def fill(self, oid: int, size: float, px: float | None = None) -> dict:
        """Our resting order ``oid`` trades ``size`` (a maker fill), at its limit price unless ``px``."""
        with self.lock:
            o = self.orders[oid]
            size = min(size, o["remaining"])
            f = self._make_fill(o, size, px if px is not None else o["px"], crossed=False)
            self._push_user(f, o)
            return f

    def fire_scheduled_cancel(self) -> int:
        """The scheduled-cancel time has come: cancel every open order (as the venue does). Returns how many."""
        with self.lock:
            if self.scheduled_cancel_ms is None:
                return 0
            n = 0
            for o in list(self.orders.values()):
                self._close(o, "scheduledCancel")
                n += 1
            self.scheduled_cancel_ms = None
            return n

    def publish_book(self) -> None:
        """Send the served book (stamped now) to the ``l2Book`` subscribers, as the venue does on every change."""
        with self.lock:
            self._broadcast("l2Book", "BTC", {"channel": "l2Book", "data": self._fresh_book()})

    def move_book(self, usd: float) -> None:
        """Shift every level of the served book by ``usd`` (a market that moves; the sizes stay)."""
        with self.lock:
            bids, asks = self.book["levels"]
            shift = [[dict(lv, px=_num(float(lv["px"]) + usd)) for lv in side] for side in (bids, asks)]
            self.book = dict(self.book, levels=shift)

    def publish_trade(self, side: str, size: float, through_usd: float = 0.0) -> None:
        """A market trade ``through_usd`` beyond the touch (``side`` "B": a buyer lifted the ask), as the ``trades``
        channel sends it."""
        with self.lock:
            bid, _, ask, _ = self.best()
            self.next_tid += 1
            px = ask + through_usd if side == "B" else bid - through_usd
            trade = {"coin": "BTC", "side": side, "px": _num(px), "sz": _num(size), "time": self._ms()}
            trade.update(hash="0x" + f"{self.next_tid:064x}", tid=self.next_tid, users=["0x1", "0x2"])
            self._broadcast("trades", "BTC", {"channel": "trades", "data": [trade]})

    def _fresh_book(self) -> dict:
        return dict(self.book, time=self._ms())  # the sample's levels, with the time the venue would stamp now

    def pay_funding(self, rate: float) -> dict:
        """A funding settlement at ``rate`` on the current position (longs pay when positive), as ``userFunding``
        reports it: ``usdc`` = -szi * oracle price * rate."""
        with self.lock:
            bid, _, ask, _ = self.best()
            px = (bid + ask) / 2
            delta = {"type": "funding", "coin": "BTC", "usdc": _num(round(-self.position * px * rate, 6))}
            delta.update(szi=_num(self.position), fundingRate=_num(rate), nSamples=None)
            entry = {"time": self._ms(), "hash": "0x" + "0" * 64, "delta": delta}
            self.funding.append(entry)
            return entry

    def publish_sample(self) -> int:
        """Send every recorded market message to the clients subscribed to its channel."""
        for msg in self.sample:
            self._broadcast(msg["channel"], "BTC", msg)
        return len(self.sample)

    # --- matching ------------------------------------------------------------------------------------------------
    def _make_fill(self, o: dict, size: float, px: float, *, crossed: bool) -> dict:
        self.next_tid += 1
        o["remaining"] = round(o["remaining"] - size, 10)
        start = self.position
        self.position = round(self.position + (size if o["side"] == "B" else -size), 10)
        if self.position == 0:
            self.entry_px = 0.0
        elif abs(self.position) > abs(start) and start * self.position >= 0:  # opened or added: average in
            self.entry_px = (abs(start) * self.entry_px + size * px) / abs(self.position)
        elif start * self.position < 0:  # flipped: the rest opens at this price
            self.entry_px = px
        fee = round(px * size * (0.00035 if crossed else 0.0001), 6)
        f = {
            "coin": o["coin"],
            "px": _num(px),
            "sz": _num(size),
            "side": o["side"],
            "time": self._ms(),
            "startPosition": _num(start),
            "dir": "Open Long" if o["side"] == "B" else "Open Short",
            "closedPnl": "0.0",
            "hash": "0x" + f"{self.next_tid:064x}",
            "oid": o["oid"],
            "crossed": crossed,
            "fee": _num(fee),
            "tid": self.next_tid,
            "feeToken": "USDC",
        }
        if o.get("cloid"):
            f["cloid"] = o["cloid"]
        self.fills.append(f)
        if o["remaining"] <= 0:
            self.orders.pop(o["oid"], None)
        return f

    def _close(self, o: dict, status: str) -> None:
        self.orders.pop(o["oid"], None)
        self._broadcast_user("orderUpdates", [self._update(o, status)])

    def _update(self, o: dict, status: str) -> dict:
        order = {k: o[k] for k in ("coin", "side", "oid", "timestamp")}
        order.update(limitPx=_num(o["px"]), sz=_num(o["remaining"]), origSz=_num(o["orig"]))
        if o.get("cloid"):
            order["cloid"] = o["cloid"]
        return {"order": order, "status": status, "statusTimestamp": self._ms()}

    def _push_user(self, f: dict, o: dict) -> None:
        self._broadcast_user("userFills", {"user": self.user, "fills": [f]})
        if o["remaining"] <= 0:
            self._broadcast_user("orderUpdates", [self._update(o, "filled")])

    def _check_px(self, px_s: str, sz_dec: int) -> str | None:
        d = Decimal(px_s).normalize()
        if d == d.to_integral_value():
            return None
        if -d.as_tuple().exponent > 6 - sz_dec or len(d.as_tuple().digits) > 5:
            return "Price must be divisible by tick size."
        return None

    def _margin_used(self) -> float:
        return sum(o["px"] * o["remaining"] for o in self.orders.values()) / LEVERAGE

    def _order(self, w: dict) -> dict:
        asset = w["a"]
        if not (0 <= asset < len(UNIVERSE)):
            return {"error": f"Invalid asset {asset}"}
        meta = UNIVERSE[asset]
        tag = f" asset={asset}"
        if (err := self._check_px(w["p"], meta["szDecimals"])) is not None:
            return {"error": err + tag}
        sz = Decimal(w["s"]).normalize()
        if sz <= 0 or -sz.as_tuple().exponent > meta["szDecimals"]:
            return {"error": "Order has invalid size." + tag}
        px, size, tif = float(w["p"]), float(w["s"]), w["t"]["limit"]["tif"]
        if px * size / LEVERAGE + self._margin_used() > self.account_value:
            return {"error": "Insufficient margin to place order." + tag}
        bid, bid_sz, ask, ask_sz = self.best()
        crosses = (w["b"] and px >= ask) or (not w["b"] and px <= bid)
        if tif == "Alo" and crosses:
            return {"error": f"Post only order would have immediately matched, bbo was {_num(bid)}@{_num(ask)}.{tag}"}
        if tif == "Ioc" and not crosses:
            return {"error": "Order could not immediately match against any resting orders." + tag}
        self.next_oid += 1
        o = {
            "coin": meta["name"], "side": "B" if w["b"] else "A", "px": px, "orig": size, "remaining": size,
            "oid": self.next_oid, "timestamp": self._ms(), "cloid": w.get("c"), "tif": tif,
        }  # fmt: skip
        self.orders[o["oid"]] = o
        if crosses:  # take the best level only (enough for tests), the rest rests (Gtc) or is cancelled (Ioc)
            take = min(size, ask_sz if w["b"] else bid_sz)
            f = self._make_fill(o, take, ask if w["b"] else bid, crossed=True)
            self._push_user(f, o)
            if tif == "Ioc" and o["remaining"] > 0:
                self.orders.pop(o["oid"], None)
                self._broadcast_user("orderUpdates", [self._update(o, "canceled")])
            if tif == "Ioc" or o["remaining"] <= 0:
                return {"filled": {"totalSz": _num(take), "avgPx": f["px"], "oid": o["oid"]}}
        self._broadcast_user("orderUpdates", [self._update(o, "open")])
        return {"resting": {"oid": o["oid"]}}

    def _find(self, asset: int, oid=None, cloid=None) -> dict | None:
        for o in self.orders.values():
            if o["coin"] == UNIVERSE[asset]["name"] and (o["oid"] == oid or (cloid and o.get("cloid") == cloid)):
                return o
        return None

    def _exchange(self, body: dict) -> tuple[int, dict]:
        action, nonce, sig = body.get("action"), body.get("nonce"), body.get("signature")
        if not isinstance(action, dict) or not isinstance(nonce, int) or not isinstance(sig, dict):
            return 422, {"status": "err", "response": "Failed to deserialize the JSON body"}
        try:
            signer = recover_agent_or_user_from_l1_action(action, sig, None, nonce, None, False)
        except Exception:  # noqa: BLE001 - any malformed signature is the same error to the client
            signer = ""
        if signer.lower() != self.signer:
            return 200, {"status": "err", "response": f"User or API Wallet {signer} does not exist."}
        with self.lock:
            if nonce <= self.last_nonce:
                return 200, {"status": "err", "response": "Invalid nonce: duplicate nonce"}
            self.last_nonce = nonce
            self.exchange_log.append(action)
            kind = action.get("type")
            if kind == "order":
                return 200, self._ok("order", [self._order(w) for w in action["orders"]])
            if kind in ("cancel", "cancelByCloid"):
                statuses: list = []
                for c in action["cancels"]:
                    o = self._find(c["a"], oid=c["o"]) if kind == "cancel" else self._find(c["asset"], cloid=c["cloid"])
                    if o is None:
                        statuses.append({"error": "Order was never placed, already canceled, or filled."})
                    else:
                        self._close(o, "canceled")
                        statuses.append("success")
                return 200, self._ok("cancel", statuses)
            if kind == "batchModify":
                statuses = []
                for m in action["modifies"]:
                    o = self._find(m["order"]["a"], oid=m["oid"])
                    if o is None:
                        statuses.append({"error": "Cannot modify canceled or filled order"})
                        continue
                    self.orders.pop(o["oid"])
                    st = self._order(m["order"])
                    if "error" in st:
                        self.orders[o["oid"]] = o  # the original stays
                    else:
                        self._broadcast_user("orderUpdates", [self._update(o, "canceled")])
                    statuses.append(st)
                return 200, self._ok("order", statuses)
            if kind == "scheduleCancel":
                t = action.get("time")
                self.schedule_calls.append(dict(action))
                if t is not None and t < self._ms() + 5000:
                    msg = "Scheduled cancel time too early, must be at least 5 seconds from now."
                    return 200, {"status": "err", "response": msg}
                self.scheduled_cancel_ms = t
                return 200, {"status": "ok", "response": {"type": "default"}}
            return 200, {"status": "err", "response": f"Unknown action type {kind!r}"}

    @staticmethod
    def _ok(kind: str, statuses: list) -> dict:
        return {"status": "ok", "response": {"type": kind, "data": {"statuses": statuses}}}

    def _open_order_json(self, o: dict) -> dict:
        out = {"coin": o["coin"], "side": o["side"], "limitPx": _num(o["px"]), "sz": _num(o["remaining"])}
        out.update(oid=o["oid"], timestamp=o["timestamp"], origSz=_num(o["orig"]))
        if o.get("cloid"):
            out["cloid"] = o["cloid"]
        return out

    def _info(self, body: dict) -> tuple[int, object]:
        kind = body.get("type")
        with self.lock:
            if kind == "meta":
                return 200, {"universe": UNIVERSE}
            if kind == "metaAndAssetCtxs":
                bid, _, ask, _ = self.best()
                mid = _num((bid + ask) / 2)
                ctx = {"funding": "0.0000125", "openInterest": "1000.0", "markPx": mid, "oraclePx": mid}
                return 200, [{"universe": UNIVERSE}, [ctx, dict(ctx, funding="-0.00001")]]
            if body.get("user") != self.user:
                return 422, {"status": "err", "response": "Failed to deserialize the JSON body"}
            if kind in ("openOrders", "frontendOpenOrders"):
                return 200, [self._open_order_json(o) for o in self.orders.values()]
            if kind == "userFills":
                return 200, list(reversed(self.fills))[:2000]
            if kind == "userFillsByTime":
                start, end = body.get("startTime", 0), body.get("endTime") or 2**62
                return 200, [f for f in self.fills if start <= f["time"] <= end]
            if kind == "clearinghouseState":
                bid, _, ask, _ = self.best()
                ntl = abs(self.position) * (bid + ask) / 2
                upnl = self.position * ((bid + ask) / 2 - self.entry_px) if self.position else 0.0
                # account_value is the wallet (deposits, fees and closed P&L aside); the venue's value adds upnl
                summary = {"accountValue": _num(round(self.account_value + upnl, 6)), "totalNtlPos": _num(ntl)}
                summary.update(totalRawUsd=_num(self.account_value), totalMarginUsed=_num(ntl / LEVERAGE))
                pos = {"coin": "BTC", "szi": _num(self.position), "leverage": {"type": "cross", "value": 10}}
                pos.update(entryPx=_num(self.entry_px), unrealizedPnl=_num(round(upnl, 6)), positionValue=_num(ntl))
                return 200, {
                    "assetPositions": [{"type": "oneWay", "position": pos}] if self.position else [],
                    "marginSummary": summary,
                    "crossMarginSummary": summary,
                    "withdrawable": _num(self.account_value - ntl / LEVERAGE),
                    "time": self._ms(),
                }
            if kind == "userFunding":
                start, end = body.get("startTime", 0), body.get("endTime") or 2**62
                return 200, [f for f in self.funding if start <= f["time"] <= end]
        return 422, {"status": "err", "response": f"Unknown info type {kind!r}"}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path == "/info":
                    code, out = server._info(body)
                elif self.path == "/exchange":
                    code, out = server._exchange(body)
                    if server.lose_next_answer:
                        server.lose_next_answer = False
                        self.close_connection = True
                        return
                else:
                    code, out = 404, {"error": "not found"}
                raw = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler

    # --- websocket -----------------------------------------------------------------------------------------------
    def _process_request(self, connection, request):
        if self.refusing:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "down\n")
        return None

    def _send(self, ws, msg: dict) -> None:
        with contextlib.suppress(ConnectionClosed):
            ws.send(json.dumps(msg))

    def _broadcast(self, channel: str, key: str, msg: dict) -> None:
        with self.lock:
            targets = [ws for ws, subs in self.clients if (channel, key) in subs]
        for ws in targets:
            self._send(ws, msg)

    def _broadcast_user(self, channel: str, data: object) -> None:
        self._broadcast(channel, self.user, {"channel": channel, "data": data})

    def _ws_handler(self, ws) -> None:
        subs: set = set()
        entry = [ws, subs]
        with self.lock:
            self.clients.append(entry)
            self.connects += 1
        try:
            for raw in ws:
                msg = json.loads(raw)
                if msg.get("method") == "ping":
                    self._send(ws, {"channel": "pong"})
                    continue
                if msg.get("method") != "subscribe":
                    continue
                sub = msg["subscription"]
                kind = sub["type"]
                key = sub.get("coin") or sub.get("user")
                self._send(
                    ws, {"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": sub}}
                )
                with self.lock:
                    subs.add((kind, key))
                    if kind == "l2Book":
                        self._send(ws, {"channel": "l2Book", "data": self._fresh_book()})
                    elif kind == "userFills":
                        snap = {"isSnapshot": True, "user": self.user, "fills": list(self.fills)}
                        self._send(ws, {"channel": "userFills", "data": snap})
        except ConnectionClosed:
            pass
        finally:
            with self.lock:
                if entry in self.clients:
                    self.clients.remove(entry)
