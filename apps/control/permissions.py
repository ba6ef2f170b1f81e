"""Who may read the console and who may change operator state: the one place that decides.

Until viewer/operator/admin roles exist, any logged-in, active user may **read** (pages, partials, the live
WebSocket) and only staff users may **act** (kill switch, pause, resume, reduce, re-arm, stop, the global
switch). Views and consumers ask these functions; they never test ``is_staff`` themselves.
"""

from __future__ import annotations

from typing import Any


def can_read(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def can_act(user: Any) -> bool:
    return can_read(user) and bool(user.is_staff)
