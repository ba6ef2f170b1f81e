"""The live page's first-paint data, as a JSON ``<script type="application/json">`` (data, not code: the CSP's
script-src does not apply to it): the parameter-change markers already recorded, and the recent audit rows."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import json_script

from apps.control.audit import audit_event
from apps.control.models import AuditEvent

register = template.Library()
MARKERS_KEPT = 200


def page_bootstrap(session: Any) -> dict[str, Any]:
    rows = AuditEvent.objects.filter(session=session, action__startswith="params.").order_by("-ts")[:MARKERS_KEPT]
    return {"session_id": session.pk, "params": [audit_event(r) for r in reversed(rows)]}


@register.simple_tag
def live_bootstrap(session: Any) -> str:
    return json_script(page_bootstrap(session), "live-bootstrap")
