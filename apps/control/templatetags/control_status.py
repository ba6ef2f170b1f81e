"""``{% session_status session [global_switch] as st %}``: a session's effective status for templates."""

from __future__ import annotations

from django import template

from apps.control.models import GlobalKillSwitch
from apps.control.selectors import SessionStatus
from apps.control.selectors import session_status as _session_status
from apps.trading.models import TradingSession

register = template.Library()


@register.simple_tag
def session_status(session: TradingSession, switch: GlobalKillSwitch | None = None) -> SessionStatus:
    """Pass the page's ``global_switch`` when it has one (a list page then reads the switch once)."""
    return _session_status(session, switch or None)
