"""Market data as recorded: instruments, trades and top-of-book quotes.

Time is stored twice where precision matters: ``ts`` (timestamptz, for queries and indexes) and the exact
integer nanoseconds from the event (``ts_exch_ns``, ``ts_local_ns``).
"""

from __future__ import annotations

from django.db import models


class Instrument(models.Model):
    class Kind(models.TextChoices):
        SPOT = "spot"
        PERP = "perp"
        PREDICTION = "prediction"

    venue = models.CharField(max_length=32)
    symbol = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SPOT)
    tick_size = models.FloatField(help_text="price increment, quote currency")
    lot_size = models.FloatField(help_text="size increment, base units")
    contract_multiplier = models.FloatField(default=1.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["venue", "symbol"], name="instrument_venue_symbol_uniq"),
            models.CheckConstraint(condition=models.Q(tick_size__gt=0), name="instrument_tick_positive"),
            models.CheckConstraint(condition=models.Q(lot_size__gt=0), name="instrument_lot_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.venue}:{self.symbol}"


class TradeTick(models.Model):
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+")
    ts = models.DateTimeField(help_text="exchange time")
    ts_exch_ns = models.BigIntegerField()
    ts_local_ns = models.BigIntegerField()
    price = models.FloatField()
    size = models.FloatField()
    aggressor = models.SmallIntegerField(help_text="+1 buy, -1 sell")
    trade_id = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [models.Index(fields=["instrument", "ts"], name="tradetick_instr_ts")]


class QuoteTick(models.Model):
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+")
    ts = models.DateTimeField()
    ts_exch_ns = models.BigIntegerField()
    ts_local_ns = models.BigIntegerField()
    bid_px = models.FloatField()
    bid_size = models.FloatField()
    ask_px = models.FloatField()
    ask_size = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["instrument", "ts"], name="quotetick_instr_ts")]
