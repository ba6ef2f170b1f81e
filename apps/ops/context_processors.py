"""Every console page shows the open alerts (templates/ops/alert_banner.html, included from base.html)."""

from __future__ import annotations

from django.http import HttpRequest

from apps.control.permissions import can_read
from apps.ops.selectors import BANNER_LIMIT, open_alerts


def alerts(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if not can_read(user):
        return {"show_alert_banner": False}
    found = list(open_alerts()[: BANNER_LIMIT + 1])
    return {
        "show_alert_banner": True,
        "open_alerts": found[:BANNER_LIMIT],
        "more_open_alerts": len(found) > BANNER_LIMIT,
    }
