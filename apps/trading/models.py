"""Trading sessions and everything we did in them: quote decisions, orders, order events and fills."""

from __future__ import annotations

from django.db import models

from apps.marketdata.models import Instrument


class TradingSession(models.Model):
    class Mode(models.TextChoices):
        PAPER = "paper"
        LIVE = "live"
        BACKTEST = "backtest"

    class Status(models.TextChoices):
        CREATED = "created"
        RUNNING = "running"
        PAUSED = "paused"  # quotes cancelled, position kept; resume continues quoting
        REDUCING = "reducing"  # only orders that reduce |inventory| may be sent
        HALTED = "halted"  # kill switch latched: no order may be sent until an operator re-arms
        STOPPED = "stopped"
        FAILED = "failed"

    name = models.CharField(max_length=100)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.PAPER)
    feed = models.CharField(max_length=32, default="simulator", help_text="where market events come from")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="sessions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    status_reason = models.TextField(blank=True)
    params = models.JSONField(default=dict, help_text="strategy and simulator parameters (validated by the engine)")
    # the number of the control.ParameterVersion that ``params`` is; the loop reads it with the status every step
    params_version = models.PositiveIntegerField(default=1, db_default=1)
    seed = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Lease: exactly one quoting loop may run a session; it renews lease_expires_at on every heartbeat.
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_state = models.JSONField(default=dict, blank=True, help_text="latest published live state")
    # A stop may ask the loop to close the position first with IOC orders no worse than the bound from the touch.
    flatten_requested = models.BooleanField(default=False, db_default=False)
    flatten_max_slippage_bps = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.CREATED, self.Status.RUNNING, self.Status.PAUSED, self.Status.REDUCING)


class QuoteDecisionRecord(models.Model):
    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="decisions")
    ts = models.DateTimeField()
    ts_ns = models.BigIntegerField()
    mid = models.FloatField()
    bid_px = models.FloatField(null=True)
    ask_px = models.FloatField(null=True)
    bid_size = models.FloatField()
    ask_size = models.FloatField()
    inputs = models.JSONField(default=dict)
    reasons = models.JSONField(default=list)

    class Meta:
        indexes = [models.Index(fields=["session", "ts"], name="decision_session_ts")]


class Order(models.Model):
    """Latest known state of one of our orders (the history is in OrderEventRecord)."""

    class Status(models.TextChoices):
        PENDING_NEW = "pending_new"
        OPEN = "open"
        PARTIALLY_FILLED = "partially_filled"
        PENDING_CANCEL = "pending_cancel"
        PENDING_MODIFY = "pending_modify"
        FILLED = "filled"
        CANCELLED = "cancelled"
        REJECTED = "rejected"

    OPEN_STATUSES = ("pending_new", "open", "partially_filled", "pending_cancel", "pending_modify")

    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="orders")
    client_order_id = models.CharField(max_length=64)
    side = models.SmallIntegerField(help_text="+1 buy, -1 sell")
    price = models.FloatField()
    size = models.FloatField()
    filled = models.FloatField(default=0.0)
    status = models.CharField(max_length=20, choices=Status.choices)
    created_ts = models.DateTimeField()
    updated_ts = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "client_order_id"], name="order_session_clid_uniq")]
        indexes = [models.Index(fields=["session", "status"], name="order_session_status")]


class OrderEventRecord(models.Model):
    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="order_events")
    ts = models.DateTimeField()
    ts_ns = models.BigIntegerField()
    client_order_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=20, help_text="place, cancel, ack, reject, fill, cancelled")
    detail = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["session", "ts"], name="orderevent_session_ts")]


class FillRecord(models.Model):
    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="fills")
    ts = models.DateTimeField()
    ts_ns = models.BigIntegerField()
    client_order_id = models.CharField(max_length=64)
    fill_id = models.CharField(max_length=64)
    side = models.SmallIntegerField()
    price = models.FloatField()
    size = models.FloatField()
    fee = models.FloatField(default=0.0)
    liquidity = models.CharField(max_length=8, default="maker")

    class Meta:
        # The natural key ends in ts so that it holds on a TimescaleDB hypertable (every unique index there must
        # contain the partitioning column); a fill id is written with one ts, so it still dedupes replays.
        constraints = [models.UniqueConstraint(fields=["session", "fill_id", "ts"], name="fill_session_fillid_ts_uniq")]
        indexes = [models.Index(fields=["session", "ts"], name="fill_session_ts")]


class EstimatorSnapshotRecord(models.Model):
    """Periodic snapshots of each estimator (value, uncertainty, state) for review and replay."""

    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="estimator_snapshots")
    ts = models.DateTimeField()
    ts_ns = models.BigIntegerField()
    name = models.CharField(max_length=40)
    value = models.FloatField(null=True)
    std = models.FloatField(null=True)
    state = models.CharField(max_length=10)
    ci_low = models.FloatField(null=True)
    ci_high = models.FloatField(null=True)
    detail = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["session", "name", "ts"], name="estsnap_session_name_ts")]


class RiskEventRecord(models.Model):
    """A risk rule tripped (or a guardrail bound): which rule, the values that tripped it, what was done."""

    session = models.ForeignKey(
        TradingSession, null=True, blank=True, on_delete=models.CASCADE, related_name="risk_events"
    )
    ts = models.DateTimeField()
    ts_ns = models.BigIntegerField()
    rule = models.CharField(max_length=60)
    action = models.CharField(max_length=20, help_text="halt, reduce, pull_quotes, warn")
    values = models.JSONField(default=dict)
    message = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["session", "ts"], name="riskevent_session_ts")]


class SweepRun(models.Model):
    """A parameter sweep: one backtest per point of a grid, run in parallel as Celery tasks."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    name = models.CharField(max_length=100)
    strategy = models.CharField(max_length=16, default="glft")
    data_format = models.CharField(max_length=32)
    data_files = models.JSONField(default=list)
    base_params = models.JSONField(default=dict, help_text="parameters shared by every point")
    grid = models.JSONField(default=dict, help_text='{"strategy.gamma": [..], ...}: dotted parameter -> values')
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    n_points = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"sweep #{self.pk} {self.name} ({self.status})"


class BacktestRun(models.Model):
    """One backtest: what was run (data, parameters, strategy) and its summary. Its decisions, orders, fills
    and P&L series hang off ``session`` (a TradingSession with mode=backtest), like any other session's."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    session = models.OneToOneField(
        TradingSession, null=True, blank=True, on_delete=models.CASCADE, related_name="backtest"
    )
    sweep = models.ForeignKey(SweepRun, null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    point = models.JSONField(default=dict, blank=True, help_text="the sweep grid values of this run")
    strategy = models.CharField(max_length=16, help_text="glft, fixed or as")
    data_format = models.CharField(max_length=32)
    data_files = models.JSONField(default=list)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["sweep", "status"], name="backtestrun_sweep_status")]


class PnlPoint(models.Model):
    """A session's P&L at one instant, by component (quote currency); components sum to ``total``."""

    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="pnl_points")
    ts = models.DateTimeField()
    ts_ns = models.BigIntegerField()
    mid = models.FloatField()
    position = models.FloatField()
    cash = models.FloatField()
    total = models.FloatField()
    spread_capture = models.FloatField()
    adverse_selection = models.FloatField()
    inventory = models.FloatField()
    fees = models.FloatField()
    funding = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["session", "ts"], name="pnlpoint_session_ts")]
