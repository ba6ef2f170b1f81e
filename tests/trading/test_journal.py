"""The write-ahead journal: a writer killed before it flushed loses nothing, and nothing is written twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.control.services import Actor, create_paper_session
from apps.marketdata.models import WriterProgress
from apps.trading.models import FillRecord, QuoteDecisionRecord
from apps.trading.recording import DECISIONS, FILLS, make_writer, recover_journals

_T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _decision(session_id: int, i: int) -> tuple:
    now = datetime.now(tz=UTC)
    return (session_id, now, i, 100.0, 99.0, 101.0, 1.0, 1.0, {"i": i}, [])


def _fill(session_id: int, i: int) -> tuple:
    # as Recorder.fill writes it: ts is the venue's time of the fill, so a fill written twice has one natural key
    return (session_id, _T0 + timedelta(seconds=i), i, f"c{i}", f"c{i}/f{i}", 1, 100.0, 0.1, 0.0, "maker")


@pytest.mark.django_db(transaction=True)
def test_rows_of_a_killed_writer_are_replayed_once_above_its_progress_mark(tmp_path):
    s = create_paper_session(Actor(label="t"), name="j", seed=1, start=False)
    jdir, sdir = tmp_path / "journal", tmp_path / "spill"
    dead = make_writer(0.5, sdir, jdir / "dead-1.journal", "dead-1")
    for i in range(10):
        dead.add(DECISIONS, _decision(s.pk, i))
        dead.add(FILLS, _fill(s.pk, i))
    assert dead.flush()  # the first 20 rows are in, with the progress mark
    for i in range(10, 15):
        dead.add(DECISIONS, _decision(s.pk, i))
        dead.add(FILLS, _fill(s.pk, i))
    # killed here: 10 rows only in the journal (no close, no flush)
    assert QuoteDecisionRecord.objects.filter(session=s).count() == 10
    assert WriterProgress.objects.get(owner="dead-1").seq == 20

    replayed = recover_journals(jdir, sdir, current_owner="alive-2")
    assert replayed == {"dead-1": 10}
    assert sorted(QuoteDecisionRecord.objects.filter(session=s).values_list("ts_ns", flat=True)) == list(range(15))
    assert FillRecord.objects.filter(session=s).count() == 15
    assert not (jdir / "dead-1.journal").exists() and not WriterProgress.objects.filter(owner="dead-1").exists()
    assert recover_journals(jdir, sdir, current_owner="alive-2") == {}  # idempotent


@pytest.mark.django_db(transaction=True)
def test_a_row_the_database_refuses_is_set_aside_and_the_rest_still_lands(tmp_path):
    s = create_paper_session(Actor(label="t"), name="p", seed=1, start=False)
    w = make_writer(0.5, tmp_path / "spill")
    w.add(FILLS, _fill(s.pk, 1))
    w.add(FILLS, _fill(s.pk, 1))  # a repeated fill id: the natural key skips it (counted as a duplicate)
    w.add(FILLS, _fill(s.pk, 2))
    w.add(DECISIONS, _decision(s.pk, 7))
    bad = list(_decision(s.pk, 8))
    bad[3] = None  # mid is NOT NULL: the database refuses this row
    w.add(DECISIONS, tuple(bad))
    w.add(DECISIONS, _decision(s.pk, 9))
    assert w.flush()
    assert FillRecord.objects.filter(session=s).count() == 2
    assert sorted(QuoteDecisionRecord.objects.filter(session=s).values_list("ts_ns", flat=True)) == [7, 9]
    assert w.buffered_rows == 0 and w.stats.rows_rejected == 1
    rejected = list((tmp_path / "spill").glob("rejected-*.pickle"))
    assert len(rejected) == 1
    import pickle

    [(table, row, error)] = pickle.loads(rejected[0].read_bytes())
    assert table == DECISIONS and row[2] == 8 and "null" in error.lower()
    w.add(DECISIONS, _decision(s.pk, 10))
    assert w.flush()  # the writer is not stuck on the bad row
    assert QuoteDecisionRecord.objects.filter(session=s, ts_ns=10).exists()
