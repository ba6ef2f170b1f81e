"""Give a console account its role: ``manage.py set_role <username> <viewer|operator|admin|none>``.

``--create`` makes the account when it does not exist yet (with ``--email``) and prints a generated password
once; it is not stored anywhere. ``none`` takes every role away: the account may still log in but reads nothing.
See docs/console-roles.md.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from apps.control.permissions import Role, assign_role, role_named, role_of


class Command(BaseCommand):
    help = "Set a console account's role (viewer, operator, admin or none); --create makes the account."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", help="viewer, operator, admin or none")
        parser.add_argument("--create", action="store_true", help="create the account if it does not exist")
        parser.add_argument("--email", default="", help="the new account's e-mail address (with --create)")

    def handle(self, *args, username: str, role: str, create: bool, email: str, **options) -> None:
        username = username.strip()
        if not username:
            raise CommandError("username: must not be empty")
        try:
            new_role = role_named(role)
        except ValueError as exc:
            raise CommandError(f"role: {exc}") from None
        email = email.strip()
        if email:
            if not create:
                raise CommandError("--email: only used with --create (to change an address, use the Django admin)")
            try:
                validate_email(email)
            except ValidationError:
                raise CommandError(f"--email: {email!r} is not an e-mail address") from None

        User = get_user_model()
        user = User.objects.filter(username=username).first()
        password = None
        if user is None:
            if not create:
                raise CommandError(f"username: no account {username!r}; add --create to make it")
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(username, email=email, password=password)
        elif create and email and user.email != email:
            raise CommandError(f"--email: account {username!r} exists with another address; not changed")

        before = role_of(user)
        assign_role(user, new_role)
        if user.is_superuser and new_role is not Role.ADMIN:
            self.stderr.write(
                f"warning: {username} is a superuser and stays an admin whatever its groups; "
                "clear is_superuser in the Django admin to limit it"
            )
        if password is not None:
            self.stdout.write(f"created {username} / {password}  (role {new_role.label}; shown once, not stored)")
        else:
            self.stdout.write(f"{username}: role {before.label} -> {new_role.label}")
