"""Structured logs: every log line as one JSON object (or plain text for a terminal), with context fields.

The project logs through the standard library (``logging.getLogger(__name__)``); structlog's
:class:`~structlog.stdlib.ProcessorFormatter` renders those records. A line carries the message (``event``),
``level``, ``logger``, ``timestamp`` (ISO 8601, UTC), every field bound to the running thread or task with
:func:`bind_log_context` (the quoting loop binds ``session_id`` and ``loop``; a request to a session's URL binds
``session_id`` and ``user``), and every ``extra={...}`` field of the call (e.g. ``order_id`` on a fill line).
``MM_LOG_FORMAT=plain`` renders the same fields as ``key=value`` text instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import structlog
from django.http import HttpRequest, HttpResponse

_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _formatter(renderer: Any) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
        foreign_pre_chain=_PRE_CHAIN,
    )


def json_formatter() -> logging.Formatter:
    """LOGGING formatter factory (``"()": "apps.ops.logs.json_formatter"``): one JSON object per line."""
    return _formatter(structlog.processors.JSONRenderer(sort_keys=False))


def plain_formatter() -> logging.Formatter:
    """The same fields as readable text, for a terminal (``MM_LOG_FORMAT=plain``)."""
    return _formatter(structlog.dev.ConsoleRenderer(colors=False))


def bind_log_context(**fields: Any) -> None:
    """Put ``fields`` on every later log line of this thread / task until :func:`unbind_log_context`."""
    structlog.contextvars.bind_contextvars(**fields)


def unbind_log_context(*keys: str) -> None:
    structlog.contextvars.unbind_contextvars(*keys)


class LogContextMiddleware:
    """Binds ``session_id`` (from the URL) and ``user`` while a request is handled, so that the log lines of the
    services a view calls carry them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)
        finally:
            unbind_log_context("session_id", "user")

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]) -> None:
        fields: dict[str, Any] = {}
        if "session_id" in kwargs:
            fields["session_id"] = kwargs["session_id"]
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            fields["user"] = user.get_username()
        if fields:
            bind_log_context(**fields)
