"""Users of each console role for tests: ``make_user("viewer")``, ``make_user("operator")``, ``make_user("admin")``
(and ``"none"``: logged in, no role)."""

from __future__ import annotations

from typing import Any

ROLE_NAMES = ("none", "viewer", "operator", "admin")
PASSWORD = "role-password-123"


def make_user(role: str, username: str | None = None) -> Any:
    from django.contrib.auth import get_user_model

    from apps.control.permissions import Role, assign_role

    user = get_user_model().objects.create_user(username or f"{role}-user", password=PASSWORD)
    assign_role(user, Role[role.upper()])
    return user
