"""Template context every console page gets: the user's role, so pages offer only what it allows."""

from __future__ import annotations

from django.http import HttpRequest

from apps.control.permissions import Role, role_of


def permissions(request: HttpRequest) -> dict[str, object]:
    role = role_of(getattr(request, "user", None))
    return {
        "role": role.label,
        "can_read": role >= Role.VIEWER,
        "can_act": role >= Role.OPERATOR,
        "can_admin": role >= Role.ADMIN,
    }
