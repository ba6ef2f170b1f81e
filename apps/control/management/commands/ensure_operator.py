"""Create (or update the password of) the operator account from MM_ADMIN_USERNAME / MM_ADMIN_PASSWORD.

With no MM_ADMIN_PASSWORD, a random password is generated once, kept in var/operator_password (mode 600) and
printed, so `make run` can tell the operator how to log in.

The account is put in the admin role (``apps.control.permissions.assign_role``): it may act, re-arm, edit
parameters and manage users, in the console and in the Django admin. A new account is not a superuser (the role
decides); an existing one keeps its superuser flag.
Other accounts get their role from ``manage.py set_role``.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.control.permissions import Role, assign_role
from mmweb import embedded
from mmweb.dbready import ensure_migrated


class Command(BaseCommand):
    help = "Create the operator account (admin role) from the environment."

    def handle(self, *args, **options) -> None:
        ensure_migrated(self.stdout)
        username = os.environ.get("MM_ADMIN_USERNAME", "operator").strip()
        if not username:
            raise CommandError("MM_ADMIN_USERNAME is set but empty")
        password = os.environ.get("MM_ADMIN_PASSWORD")
        generated = False
        if password is None:
            path = embedded.var_dir() / "operator_password"
            if path.exists():
                password = path.read_text().strip()
            else:
                password = secrets.token_urlsafe(12)
                path.write_text(password)
                path.chmod(0o600)
            generated = True
        elif len(password) < 8:
            raise CommandError("MM_ADMIN_PASSWORD must be at least 8 characters")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if created or not user.check_password(password):
            user.set_password(password)
        user.is_active = True
        user.save()
        assign_role(user, Role.ADMIN)
        origin = "generated, kept in var/operator_password" if generated else "from MM_ADMIN_PASSWORD"
        self.stdout.write(f"operator account: {username} / {password}  ({origin})")
