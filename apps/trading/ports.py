"""The port through which trading reports to the control layer, so ``apps.trading`` never imports ``apps.control``.

A quoting loop or a backtest changes its session's status only by *reporting* an event of the lifecycle table
(``run``, ``halt``, ``reduce``, ``finish``, ``fail``) and leaves its own notes (``loop.start``…) through a
:class:`SessionControl`; the control layer decides, writes the status and the audit row, and broadcasts. The
implementation is named by ``settings.MM_SESSION_CONTROL`` (default ``apps.control.ports.DatabaseSessionControl``)
and handed to the loop by its task; a test may hand in its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class ControlSnapshot:
    """The session's own status, the global switch's state and the session's parameter-set version, read together
    (one snapshot). A loop that sees a version other than the one it runs loads it with ``current_params``."""

    status: str
    global_state: str
    params_version: int = 0  # 0: the port does not track versions (the loop then never reloads)


class SessionControl(Protocol):
    session_id: int

    def read(self) -> ControlSnapshot:
        """The session's status, the global switch and the parameter-set version, in one query."""

    def current_params(self) -> tuple[int, dict[str, Any]]:
        """The session's current parameter-set version and its params, read together."""

    def report(self, event: str, reason: str, *, actor_label: str | None = None, **detail: Any) -> str:
        """Ask for a lifecycle event (``run``, ``halt``, ``reduce``, ``finish``, ``fail``); returns the status
        after it. ``actor_label`` names who asks when not the port's owner (e.g. ``risk:drawdown``). A refused
        event raises ``ValueError`` with the table's reason."""

    def note(self, action: str, reason: str = "", **detail: Any) -> None:
        """An audit row of the platform's own (``loop.start``, ``loop.recovered``, ``loop.lease_held``, …)."""

    def flatten_request(self) -> float | None:
        """The slippage bound (bps) of a stop that asked to flatten, else None."""

    def shown_status(self, snapshot: ControlSnapshot) -> str:
        """The status a page shows for ``snapshot``: the session's, or the global switch's when stricter."""


def session_control(session_id: int, actor_label: str = "quoting-loop") -> SessionControl:
    """The configured implementation for one session."""
    cls = import_string(getattr(settings, "MM_SESSION_CONTROL", "apps.control.ports.DatabaseSessionControl"))
    return cls(session_id, actor_label=actor_label)
