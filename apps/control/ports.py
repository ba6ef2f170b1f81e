"""The control layer's side of :mod:`apps.trading.ports`: what a loop or a backtest reports becomes a lifecycle
transition (status, audit row, broadcast), written here and nowhere else."""

from __future__ import annotations

from typing import Any

from django.db.models import Subquery

from apps.control import audit, lifecycle
from apps.control.models import GlobalKillSwitch
from apps.control.selectors import effective_status
from apps.trading.models import TradingSession
from apps.trading.ports import ControlSnapshot


class DatabaseSessionControl:
    """One session's port onto PostgreSQL. Stateless apart from its ids: safe to rebuild after a restart."""

    def __init__(self, session_id: int, *, actor_label: str = "quoting-loop") -> None:
        self.session_id = session_id
        self.actor_label = actor_label

    def read(self) -> ControlSnapshot:
        # One query, so one snapshot: a global re-arm pauses the sessions it halted in the same transaction, and
        # reading the two apart could see the switch open while the session still said running.
        switch = GlobalKillSwitch.objects.filter(singleton=True).values("state")[:1]
        row = (
            TradingSession.objects.filter(pk=self.session_id)
            .annotate(global_state=Subquery(switch))
            .values_list("status", "global_state", "params_version")
            .first()
        )
        if row is None:
            return ControlSnapshot(TradingSession.Status.STOPPED, GlobalKillSwitch.State.ARMED)
        return ControlSnapshot(row[0], row[1] or GlobalKillSwitch.State.ARMED, row[2])

    def current_params(self) -> tuple[int, dict[str, Any]]:
        # one row: the version number and the params it names were written in one transaction by apps.control.params
        version, params = TradingSession.objects.filter(pk=self.session_id).values_list("params_version", "params")[0]
        return int(version), dict(params)

    def report(
        self,
        event: str,
        reason: str,
        *,
        actor_label: str | None = None,
        extra_fields: dict[str, Any] | None = None,
        **detail: Any,
    ) -> str:
        session = lifecycle.transition(
            self.session_id,
            event,
            reason=reason[: audit.MAX_REASON_CHARS],
            actor_label=actor_label or self.actor_label,
            by_system=True,
            extra_fields=extra_fields,
            **detail,
        )
        return session.status

    def note(self, action: str, reason: str = "", **detail: Any) -> None:
        session = TradingSession.objects.filter(pk=self.session_id).first()
        if session is not None:
            audit.record(self.actor_label, None, action, session, reason, **detail)

    def flatten_request(self) -> float | None:
        return (
            TradingSession.objects.filter(pk=self.session_id, flatten_requested=True)
            .values_list("flatten_max_slippage_bps", flat=True)
            .first()
        )

    def shown_status(self, snapshot: ControlSnapshot) -> str:
        return effective_status(snapshot.status, snapshot.global_state)
