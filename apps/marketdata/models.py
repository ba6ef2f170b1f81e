"""Market data as recorded: instruments, trades, top-of-book quotes, L2 depth, funding, imports and quarantine.

Time is stored twice where precision matters: ``ts`` (timestamptz, for queries, indexes and hypertable
partitioning) and the exact integer nanoseconds from the event (``ts_exch_ns``, ``ts_local_ns``).
``ts`` is the exchange time, or the local receive time when the venue sent none (``ts_exch_ns == 0``, e.g.
Binance spot bookTicker), so no row lands in 1970.

Design choices for the high-rate tables (trades, quotes, depth updates, depth snapshots):

* **Natural keys make re-import idempotent.** Trades are unique on ``(instrument, trade_id, ts)`` where a trade id
  exists; quotes, depth updates and snapshots on ``(instrument, dedupe_key, ts)`` where ``dedupe_key`` is a 64-bit
  hash of the event's content (both clocks, sequence ids, prices, sizes), computed by the importer. Rows written
  without a key (``trade_id = ''``, ``dedupe_key IS NULL``: the live recorder) are never de-duplicated, so nothing
  is ever dropped by accident. ``ts`` is part of every unique index because a TimescaleDB hypertable requires the
  partitioning column in each one; the time of a given event never changes, so the key is as strong without it.
* **Depth diffs are stored one row per message**, with the levels as parallel ``float8[]`` arrays, not one row
  per level: 6.5 k rows instead of 440 k for the USD-M sample, one index entry per message, and replay gets the
  engine's :class:`~apps.engine.market.events.DepthUpdate` back without regrouping. Per-level questions are
  answered with ``unnest`` (see :mod:`apps.marketdata.selectors`).
* **No database foreign-key constraint and no separate ``instrument_id`` index** on these tables: a deferred FK
  trigger per copied row costs more than the copy itself, and ``(instrument, ts)`` already serves lookups.
  Instruments are only created, never deleted, by the services (``on_delete=PROTECT`` still guards the ORM).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now


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


def _instrument_fk() -> models.ForeignKey:
    return models.ForeignKey(
        Instrument, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )


class TradeTick(models.Model):
    instrument = _instrument_fk()
    ts = models.DateTimeField(help_text="exchange time")
    ts_exch_ns = models.BigIntegerField()
    ts_local_ns = models.BigIntegerField()
    price = models.FloatField()
    size = models.FloatField()
    aggressor = models.SmallIntegerField(help_text="+1 buy, -1 sell")
    trade_id = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [models.Index(fields=["instrument", "ts"], name="tradetick_instr_ts")]
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "trade_id", "ts"],
                condition=~models.Q(trade_id=""),
                name="tradetick_natural_key",
            )
        ]


class QuoteTick(models.Model):
    instrument = _instrument_fk()
    ts = models.DateTimeField(help_text="exchange time, or local time when the venue sent none")
    ts_exch_ns = models.BigIntegerField()
    ts_local_ns = models.BigIntegerField()
    bid_px = models.FloatField()
    bid_size = models.FloatField()
    ask_px = models.FloatField()
    ask_size = models.FloatField()
    update_id = models.BigIntegerField(default=0, help_text="exchange book update id (Binance u), 0 if none")
    dedupe_key = models.BigIntegerField(null=True, blank=True, help_text="content hash; NULL = never de-duplicated")

    class Meta:
        indexes = [models.Index(fields=["instrument", "ts"], name="quotetick_instr_ts")]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "dedupe_key", "ts"], name="quotetick_natural_key"),
        ]


class DepthUpdateRecord(models.Model):
    """One L2 diff message: levels as parallel arrays; a size of 0 deletes the level."""

    instrument = _instrument_fk()
    ts = models.DateTimeField()
    ts_exch_ns = models.BigIntegerField()
    ts_local_ns = models.BigIntegerField()
    first_update_id = models.BigIntegerField(default=0)
    last_update_id = models.BigIntegerField(default=0)
    prev_update_id = models.BigIntegerField(default=0)
    bid_px = ArrayField(models.FloatField())
    bid_size = ArrayField(models.FloatField())
    ask_px = ArrayField(models.FloatField())
    ask_size = ArrayField(models.FloatField())
    dedupe_key = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["instrument", "ts"], name="depthupd_instr_ts")]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "dedupe_key", "ts"], name="depthupd_natural_key"),
        ]


class DepthSnapshotRecord(models.Model):
    """One full L2 snapshot, best level first on each side."""

    instrument = _instrument_fk()
    ts = models.DateTimeField()
    ts_exch_ns = models.BigIntegerField()
    ts_local_ns = models.BigIntegerField()
    last_update_id = models.BigIntegerField(default=0)
    bid_px = ArrayField(models.FloatField())
    bid_size = ArrayField(models.FloatField())
    ask_px = ArrayField(models.FloatField())
    ask_size = ArrayField(models.FloatField())
    dedupe_key = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["instrument", "ts"], name="depthsnap_instr_ts")]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "dedupe_key", "ts"], name="depthsnap_natural_key"),
        ]


class FundingRate(models.Model):
    instrument = _instrument_fk()
    ts = models.DateTimeField()
    ts_exch_ns = models.BigIntegerField()
    ts_local_ns = models.BigIntegerField()
    rate = models.FloatField(help_text="per funding interval, fraction (0.0001 = 1 bp)")
    interval_s = models.FloatField(default=8 * 3600.0)

    class Meta:
        indexes = [models.Index(fields=["instrument", "ts"], name="funding_instr_ts")]
        constraints = [models.UniqueConstraint(fields=["instrument", "ts"], name="funding_natural_key")]


class ImportRun(models.Model):
    """One ``import_marketdata`` invocation."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    fmt = models.CharField(max_length=32)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="import_runs")
    db_mode = models.CharField(max_length=16, help_text="timescaledb | postgresql")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"import #{self.pk} {self.fmt} {self.instrument}"


class ImportFile(models.Model):
    """One file of an import run, with what it yielded and what landed."""

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="files")
    path = models.TextField()
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField()
    fmt = models.CharField(max_length=32)
    kind = models.CharField(max_length=32, blank=True, help_text="sub-kind detected in the file (trades, quotes...)")
    lines = models.BigIntegerField(default=0)
    parsed = models.JSONField(default=dict, help_text="events parsed, by table")
    inserted = models.JSONField(default=dict, help_text="rows new to the database, by table")
    duplicates = models.JSONField(default=dict, help_text="rows already stored (natural key), by table")
    quarantined = models.JSONField(default=dict, help_text="quarantined records, by reason")
    ignored = models.JSONField(default=dict)
    clock_offset_ms = models.FloatField(null=True, blank=True, help_text="median local - exchange time")
    book_matches = models.IntegerField(default=0)
    book_mismatches = models.IntegerField(default=0)
    duration_s = models.FloatField(default=0.0)
    rows_per_s = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return self.path


class Quarantine(models.Model):
    """An input record refused by a parser or a data-quality check, kept with its raw text for review."""

    import_file = models.ForeignKey(ImportFile, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    file_sha256 = models.CharField(max_length=64)
    path = models.TextField()
    line_no = models.BigIntegerField(help_text="1-based line in the file (zip: in the member); 0 = not a line")
    reason = models.CharField(max_length=32)
    detail = models.TextField(blank=True)
    raw = models.TextField(blank=True)
    dedupe_key = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["file_sha256", "dedupe_key"], name="quarantine_natural_key")]
        indexes = [models.Index(fields=["reason"], name="quarantine_reason")]

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no} {self.reason}"


class WriterProgress(models.Model):
    """How far a journaled batched writer got: every journal row up to ``seq`` is in the database (written in the
    same transaction as the rows). A successor replays the dead writer's journal above this mark."""

    owner = models.CharField(max_length=80, primary_key=True)
    seq = models.BigIntegerField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.owner}@{self.seq}"
