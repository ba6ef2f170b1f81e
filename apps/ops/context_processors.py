"""Every console page shows the open alerts (templates/ops/alert_banner.html, included from base.html)."""

from __future__ import annotations

from functools import cached_property

from django.http import HttpRequest

from apps.control.permissions import can_read
from apps.ops.models import Alert
from apps.ops.selectors import BANNER_LIMIT, open_alerts


class AlertBanner:
    """Read only when a template shows it: an htmx partial that does not include the banner costs no query."""

    @cached_property
    def _found(self) -> list[Alert]:
        return list(open_alerts()[: BANNER_LIMIT + 1])

    @property
    def alerts(self) -> list[Alert]:
        return self._found[:BANNER_LIMIT]

    @property
    def more(self) -> bool:
        return len(self._found) > BANNER_LIMIT


def alerts(request: HttpRequest) -> dict[str, object]:
    if not can_read(getattr(request, "user", None)):
        return {"show_alert_banner": False}
    return {"show_alert_banner": True, "alert_banner": AlertBanner()}
