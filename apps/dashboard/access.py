"""Who may read and who may act, and how a refusal is answered.

The rule itself is in :mod:`apps.control.permissions` (roles viewer < operator < admin). Here it is
applied to views: ``read_view`` for pages and partials, ``action_view`` (operator) and ``admin_view`` for every
state-changing POST.

An API client (``Accept: application/json`` and not an htmx request) gets JSON for every outcome: 401 when
logged out (never a redirect to the HTML login page), 403, 404, 405 and 400 with ``{"error": ...}``. A page
gets an escaped HTML fragment; nothing the client sent is echoed back unescaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.html import format_html
from django.views import csrf

from apps.control.permissions import Role, can_read, role_of

View = Callable[..., HttpResponse]


def wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "") and not request.headers.get("HX-Request")


def refuse(request: HttpRequest, status: int, message: str, *, api: bool | None = None) -> HttpResponse:
    """A refusal as JSON for an API client, else as an escaped HTML fragment. For htmx the fragment is appended
    to the panel that was the request's target (``HX-Reswap``), so the panel stays and the message shows."""
    if wants_json(request) if api is None else api:
        return JsonResponse({"error": message}, status=status)
    resp = HttpResponse(format_html('<p class="error">{}</p>', message), status=status)
    if request.headers.get("HX-Request"):
        resp["HX-Reswap"] = "beforeend"
    return resp


def _not_logged_in(request: HttpRequest) -> HttpResponse:
    if wants_json(request):
        return refuse(request, 401, "authentication required", api=True)
    if request.headers.get("HX-Request"):
        # a panel of a page whose login expired: send the whole page to the login form, not the form into the panel
        resp = HttpResponse(status=401)
        page = urlsplit(request.headers.get("HX-Current-URL", "")).path or request.path
        resp["HX-Redirect"] = redirect_to_login(page)["Location"]
        return resp
    return redirect_to_login(request.get_full_path())


def read_view(view: View) -> View:
    """A page or partial: the viewer role or above may read. Logged out: a redirect to the login page (401 JSON for
    an API client); logged in with no role: 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return _not_logged_in(request)
        if not can_read(request.user):
            return refuse(request, 403, "this account has no console role (viewer, operator or admin)")
        return view(request, *args, **kwargs)

    wrapped.access = "read"  # type: ignore[attr-defined]  # read by the permission matrix
    wrapped.required_role = Role.VIEWER  # type: ignore[attr-defined]
    return wrapped


def action_name(request: HttpRequest, kwargs: dict[str, Any]) -> str:
    """The action an endpoint is asked for: the URL's ``action`` argument, else the POST field ``action``."""
    return str(kwargs.get("action") or request.POST.get("action", ""))


def action_view(
    view: View | None = None, *, role: Role = Role.OPERATOR, per_action: Mapping[str, Role] | None = None
) -> Any:
    """A state-changing endpoint: logged in (else redirect / 401), POST (else 405), at least ``role`` (operator by
    default; ``admin_view`` for admin-only actions) else 403; an unknown object is a 404 in JSON for an API client.

    ``per_action`` raises the role for some of an endpoint's actions (named as :func:`action_name` reads them):
    ``@action_view(per_action={"rearm": Role.ADMIN})`` lets an operator halt and reduce, and only an admin re-arm.
    Usable bare (``@action_view``) or with arguments (``@action_view(role=Role.ADMIN)``)."""
    raised = dict(per_action or {})

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            api = wants_json(request)
            if not request.user.is_authenticated:
                return _not_logged_in(request)
            if request.method != "POST":
                resp = refuse(request, 405, f"method {request.method} not allowed; use POST", api=api)
                resp["Allow"] = "POST"
                return resp
            have = role_of(request.user)
            if have < role:
                return refuse(request, 403, f"this needs the {role.label} role", api=api)
            action = action_name(request, kwargs) if raised else ""
            if action in raised and have < raised[action]:
                return refuse(request, 403, f"{action} needs the {raised[action].label} role", api=api)
            try:
                return view(request, *args, **kwargs)
            except Http404:
                if api:
                    return refuse(request, 404, "no such session", api=True)
                raise

        wrapped.access = "admin" if role >= Role.ADMIN else "action"  # type: ignore[attr-defined]
        wrapped.state_changing = True  # type: ignore[attr-defined]  # read by the permission tests
        wrapped.required_role = role  # type: ignore[attr-defined]
        wrapped.per_action_roles = raised  # type: ignore[attr-defined]
        return wrapped

    return decorate(view) if view is not None else decorate


def admin_view(view: View) -> View:
    """A state-changing endpoint only an admin may use (parameter edits, re-arm, users)."""
    return action_view(view, role=Role.ADMIN)


def required_role(view: Any, action: str = "") -> Role | None:
    """The role a view marked by this module needs (for ``action``, where it raises some), or None if unmarked."""
    role = getattr(view, "required_role", None)
    if role is None:
        return None
    return max(role, getattr(view, "per_action_roles", {}).get(action, role))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: JSON for an API client (401 when it is not even logged in), Django's page otherwise."""
    if wants_json(request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return refuse(request, 401, "authentication required", api=True)
        return refuse(request, 403, f"CSRF check failed: {reason}", api=True)
    if request.headers.get("HX-Request"):
        return refuse(request, 403, "the page is out of date (CSRF check failed); reload it")
    return csrf.csrf_failure(request, reason)
