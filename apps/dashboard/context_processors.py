"""Template context every console page gets: whether the user may act, so pages offer only what they allow."""

from __future__ import annotations

from django.http import HttpRequest

from apps.control.permissions import can_act


def permissions(request: HttpRequest) -> dict[str, bool]:
    return {"can_act": can_act(getattr(request, "user", None))}
