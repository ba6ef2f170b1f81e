"""Browser-facing protections that Django and Channels do not give out of the box.

- :class:`ContentSecurityPolicyMiddleware`: a Content-Security-Policy on every HTTP response. Scripts and styles
  come only from our own static files (no inline script, no inline style, no ``eval``), so an injected tag
  cannot run even if some output were left unescaped. The htmx WebSocket extension needs ``connect-src`` to
  reach the same host over ``ws:``/``wss:``.
- :class:`WebsocketOriginValidator`: a WebSocket handshake is accepted only from an allowed origin, compared by
  scheme, host *and* port (Channels' ``AllowedHostsOriginValidator`` compares the host only, so any port on
  ``localhost`` could open a socket with the operator's cookie). Allowed are the ``CSRF_TRUSTED_ORIGINS`` and
  the page's own origin (the ``Host`` header, itself in ``ALLOWED_HOSTS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.utils.deprecation import MiddlewareMixin

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HTTP_OF_WS = {"ws": "http", "wss": "https"}


def normalize_origin(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin such as ``http://127.0.0.1:8000``, the default port filled in;
    None for anything that is not a plain http(s) origin (``null``, a path, user info, a bad port)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _host_header_origin(host: str, scheme: str) -> tuple[str, str, int] | None:
    """The origin a page served for ``Host: host`` over ``scheme`` has; None when the host is not allowed."""
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    try:
        port_n = int(port) if port else _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, domain.strip("[]").lower(), port_n


def origin_allowed(origin: str | None, host: str | None, ws_scheme: str = "ws") -> bool:
    """Whether a WebSocket handshake with this ``Origin`` and ``Host`` comes from one of our own pages."""
    if not origin:
        return False  # every browser sends Origin on a WebSocket handshake; a client that does not is refused
    got = normalize_origin(origin)
    if got is None:
        return False
    trusted = {normalize_origin(o) for o in settings.CSRF_TRUSTED_ORIGINS} - {None}
    if got in trusted:
        return True
    if host:
        return got == _host_header_origin(host, _HTTP_OF_WS.get(ws_scheme, "http"))
    return False


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin1")
    return None


class WebsocketOriginValidator:
    """ASGI wrapper that refuses a WebSocket handshake whose Origin is not one of ours (see module doc)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("WebsocketOriginValidator only wraps WebSocket connections")
        if origin_allowed(_header(scope, b"origin"), _header(scope, b"host"), scope.get("scheme", "ws")):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def content_security_policy(host: str | None, secure: bool) -> str:
    """The policy for a page served for ``Host: host``; ``host`` None when it is not an allowed host."""
    connect = ["'self'"]
    if host:
        # 'self' covers ws:/wss: to the same host in CSP Level 3 browsers; say it explicitly for the others.
        connect += [f"wss://{host}"] if secure else [f"ws://{host}", f"wss://{host}"]
    directives: Iterable[str] = (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        f"connect-src {' '.join(connect)}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
    return "; ".join(directives)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Adds :func:`content_security_policy` to every response that does not set its own."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if "Content-Security-Policy" not in response:
            try:
                host = request.get_host()  # validated against ALLOWED_HOSTS, so safe to put in a header
            except DisallowedHost:
                host = None
            response["Content-Security-Policy"] = content_security_policy(host, request.is_secure())
        return response
