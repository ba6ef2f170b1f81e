from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from apps.control.services import Actor, stop_session
from apps.trading.models import Order, TradingSession
from mmweb.dbready import ensure_migrated


class Command(BaseCommand):
    help = "Stop every active session (their loops cancel all orders) and wait until no order is left open."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reason", default="shutdown")
        parser.add_argument("--wait", type=float, default=20.0, help="seconds to wait for orders to be cancelled")

    def handle(self, *args, **opts) -> None:
        ensure_migrated(self.stdout)
        actor = Actor(label="stop_all_sessions")
        to_stop = list(
            TradingSession.objects.filter(
                status__in=[TradingSession.Status.CREATED, TradingSession.Status.RUNNING]
            ).values_list("pk", flat=True)
        )
        for pk in to_stop:
            stop_session(actor, pk, opts["reason"])
        # HALTED sessions stay latched (only an operator re-arms them); their loops cancel their own orders.
        active = to_stop + list(
            TradingSession.objects.filter(status=TradingSession.Status.HALTED).values_list("pk", flat=True)
        )
        deadline = time.monotonic() + opts["wait"]
        while time.monotonic() < deadline:
            left = Order.objects.filter(session_id__in=active, status__in=Order.OPEN_STATUSES).count()
            running = TradingSession.objects.filter(pk__in=active).exclude(lease_owner="").count()
            if left == 0 and running == 0:
                break
            time.sleep(0.2)
        left = Order.objects.filter(session_id__in=active, status__in=Order.OPEN_STATUSES).count()
        self.stdout.write(f"stopped {len(active)} session(s); open orders left: {left}")
