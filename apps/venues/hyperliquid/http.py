"""The info and exchange endpoints (JSON over HTTP POST), with L1 actions signed by the SDK's ``sign_l1_action``.

Errors: a transport failure raises :class:`VenueUnavailableError`; a ``{"status": "err", "response": msg}``
answer raises :class:`VenueError` carrying the venue's message. Per-order errors (``statuses[i].error``) are
returned to the caller as they are.

Every answered request is a round trip for the clock estimator (``on_round_trip``, the request sent to its answer
read, in ns); requests that fail are not (a timeout says nothing about the path's latency).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from hyperliquid.utils.signing import sign_l1_action

from .secrets import Credentials


class VenueError(RuntimeError):
    """The venue answered with an error; ``str(exc)`` is its message."""


class VenueUnavailableError(ConnectionError):
    """The venue could not be reached (or answered garbage)."""


class HyperliquidHttp:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None,
        *,
        mainnet: bool,
        timeout_s: float = 5.0,
        on_round_trip: Callable[[int], None] | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._creds = credentials
        self.mainnet = mainnet
        self.timeout_s = timeout_s
        self.on_round_trip = on_round_trip
        self._nonce_lock = threading.Lock()
        self._last_nonce = 0

    def _post(self, path: str, body: dict) -> object:
        req = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        t0 = time.perf_counter_ns()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise VenueError(f"HTTP {exc.code} from {path}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise VenueUnavailableError(f"{path}: {exc}") from None
        if self.on_round_trip is not None:
            self.on_round_trip(time.perf_counter_ns() - t0)
        try:
            return json.loads(raw)
        except ValueError:
            raise VenueUnavailableError(f"{path}: answer is not JSON: {raw[:120]!r}") from None

    def info(self, body: dict) -> object:
        return self._post("/info", body)

    def nonce(self) -> int:
        """Milliseconds, strictly increasing (the venue rejects a reused nonce)."""
        with self._nonce_lock:
            n = max(int(time.time() * 1000), self._last_nonce + 1)
            self._last_nonce = n
            return n

    def exchange(self, action: dict) -> dict:
        """Sign and send one L1 action; returns ``response`` of an ``ok`` answer."""
        if self._creds is None:
            raise VenueError("trading needs credentials (MM_HYPERLIQUID_SECRET_KEY or its _FILE variant)")
        nonce = self.nonce()
        signature = sign_l1_action(self._creds.wallet, action, None, nonce, None, self.mainnet)
        answer = self._post("/exchange", {"action": action, "nonce": nonce, "signature": signature})
        if not isinstance(answer, dict):
            raise VenueUnavailableError(f"/exchange: unexpected answer {answer!r:.120}")
        if answer.get("status") != "ok":
            raise VenueError(str(answer.get("response", answer)))
        return answer.get("response") or {}
