"""Who may do what in the console: the one place that decides. Views, htmx endpoints and the WebSocket consumer
ask these functions; they never test ``is_staff`` or group names themselves.

Roles come from Django groups (created by migration ``control.0002_roles``), each including the one below it:

* **viewer**: read every page, partial and the live WebSocket.
* **operator**: also start, pause, resume, reduce and stop sessions, press a kill switch (a session's or the
  global one's halt/reduce) and acknowledge alerts.
* **admin**: also edit and revert parameters, re-arm (a session or the global switch) and manage users.

A superuser is an admin. A logged-in user in none of the groups has no role and may read nothing.

The Django admin is the admin role's alone: ``is_staff`` is set for admins only (:func:`assign_role`, and the user
admin keeps it in step with the groups), the admin site checks the role itself, and :class:`AdminRoleBackend`
gives the role the model permissions it needs there (users, groups; the records stay read-only by their
ModelAdmins).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Role(IntEnum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# group name -> role; the groups are created by a data migration
GROUPS: dict[str, Role] = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN}


def role_of(user: Any) -> Role:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Role.NONE
    if user.is_superuser:
        return Role.ADMIN
    cached = getattr(user, "_mm_role", None)
    if cached is not None:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = max((r for name, r in GROUPS.items() if name in names), default=Role.NONE)
    user._mm_role = role  # one query per request/connection
    return role


def can_read(user: Any) -> bool:
    return role_of(user) >= Role.VIEWER


def can_operate(user: Any) -> bool:
    return role_of(user) >= Role.OPERATOR


def can_admin(user: Any) -> bool:
    return role_of(user) >= Role.ADMIN


# kept for callers written before roles: acting on a session is the operator's right
can_act = can_operate


def assign_role(user: Any, role: Role) -> None:
    """Put ``user`` in exactly the group of ``role`` (none for Role.NONE). Admins are staff, so the Django admin
    lets them in; nobody else is."""
    from django.contrib.auth.models import Group

    user.groups.remove(*Group.objects.filter(name__in=GROUPS))
    if role is not Role.NONE:
        group, _ = Group.objects.get_or_create(name=role.label)
        user.groups.add(group)
    user.is_staff = role is Role.ADMIN or user.is_superuser
    user.save(update_fields=["is_staff"])
    user.__dict__.pop("_mm_role", None)


def role_named(name: str) -> Role:
    """``"viewer"``, ``"operator"``, ``"admin"`` or ``"none"`` (any case) as a Role; anything else is a ValueError
    that lists the choices."""
    try:
        return Role[name.strip().upper()]
    except KeyError:
        choices = ", ".join(r.label for r in sorted(Role, reverse=True))
        raise ValueError(f"role must be one of {choices}, not {name!r}") from None


class AdminRoleBackend:
    """An authentication backend that logs nobody in and gives the admin role every model permission, so an admin
    who is not a superuser can manage users and groups (and read every record) in the Django admin. Writes the
    ModelAdmins refuse (orders, fills, audit rows, ...) stay refused: they answer no to everyone."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return can_admin(user_obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return can_admin(user_obj)
