"""Per-session P&L and inventory by bucket (apps.trading.selectors) on plain PostgreSQL, against an oracle that
replays the record fill by fill. The TimescaleDB continuous-aggregate path is held to the same rows in
tests/marketdata/test_timescale_pglite.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import connection

from apps.engine.market.events import Fill, Side
from apps.marketdata.models import QuoteTick
from apps.marketdata.timescale import POSTGRESQL, detect_mode
from apps.trading.models import FillRecord, TradingSession
from apps.trading.recording import Recorder, make_writer
from apps.trading.selectors import session_pnl, session_pnl_on
from tests.trading.pnl_fixture import NS, T0_NS, as_tuples, load, make_record, ns_dt, oracle

pytestmark = pytest.mark.django_db


def assert_rows_equal(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:3] == pytest.approx(w[:3], abs=1e-12), (g, w)  # bucket, n_fills, inventory (rounded to 1e-12)
        for a, b in zip(g[3:], w[3:], strict=True):
            assert (a is None) == (b is None), (g, w)
            if a is not None:
                assert a == pytest.approx(b, rel=1e-12, abs=1e-9), (g, w)


@pytest.fixture
def record():
    rec = make_record(seed=7)
    with connection.cursor() as cur:
        iid, sid = load(cur, rec)
    return rec, iid, sid


@pytest.mark.parametrize(("width", "step_s"), [("1 minute", 60), ("1 second", 1), ("5 seconds", 5), ("2 minutes", 120)])
def test_whole_session_matches_the_fill_by_fill_oracle(record, width, step_s):
    rec, iid, sid = record
    with connection.cursor() as cur:
        assert detect_mode(cur) == POSTGRESQL  # the raw-row path; the cagg path is proven on TimescaleDB
        got = session_pnl_on(cur, sid, iid, ns_dt(T0_NS), ns_dt(T0_NS + 301 * NS), width)
    want = oracle(rec, T0_NS, T0_NS + 301 * NS, step_s)
    assert len(want) >= 3 and sum(r[1] for r in want) == len(rec.fills)
    assert_rows_equal(as_tuples(got), want)
    # the last bar is where the whole record leaves the session
    final = got[-1]
    assert final.inventory == pytest.approx(sum(s * x for _t, s, _p, x, _f in rec.fills), abs=1e-12)
    assert final.n_fills + sum(b.n_fills for b in got[:-1]) == len(rec.fills)


def test_a_window_in_the_middle_opens_with_the_position_held_before_it(record):
    _rec, iid, sid = record
    with connection.cursor() as cur:
        whole = session_pnl_on(cur, sid, iid, ns_dt(T0_NS), ns_dt(T0_NS + 301 * NS), "1 second")
        start = ns_dt(T0_NS + 120 * NS + 400_000_000)  # not on a bucket edge: aligned down to 120 s
        part = session_pnl_on(cur, sid, iid, start, ns_dt(T0_NS + 180 * NS), "1 second")
    assert part, "the window has buckets"
    assert part[0].bucket == ns_dt(T0_NS + 120 * NS)
    assert part[0].inventory != 0 or part[0].cash != 0  # the window opens with what came before it
    same = [b for b in whole if part[0].bucket <= b.bucket < ns_dt(T0_NS + 180 * NS)]
    assert_rows_equal(as_tuples(part), as_tuples(same))


def test_fills_before_any_quote_are_marked_at_their_own_price():
    rec = make_record(seed=11, quote_from_s=100)
    with connection.cursor() as cur:
        iid, sid = load(cur, rec)
        got = session_pnl_on(cur, sid, iid, ns_dt(T0_NS), ns_dt(T0_NS + 301 * NS), "1 second")
    want = oracle(rec, T0_NS, T0_NS + 301 * NS, 1)
    assert_rows_equal(as_tuples(got), want)
    first_quote = ns_dt(rec.quotes[0][0] - rec.quotes[0][0] % NS)  # its bucket
    assert first_quote >= ns_dt(T0_NS + 100 * NS)
    early = [b for b in got if b.bucket < first_quote]
    assert early and all(b.mid in {f[2] for f in rec.fills} for b in early)  # marked at fill prices
    later = [b for b in got if b.bucket >= first_quote]
    mids = {(bid + ask) / 2 for _t, bid, ask in rec.quotes}
    assert all(b.mid in mids for b in later)  # once quoted, never a fill price again


def test_defaults_cover_the_session_and_agree_with_the_orm_sums(record):
    rec, _iid, sid = record
    session = TradingSession.objects.get(pk=sid)
    bars = session_pnl(session)
    signed = sum(f.size if f.side > 0 else -f.size for f in FillRecord.objects.filter(session=session))
    cash = sum((-f.price * f.size if f.side > 0 else f.price * f.size) - f.fee for f in session.fills.all())
    assert sum(b.n_fills for b in bars) == len(rec.fills)
    assert bars[-1].inventory == pytest.approx(signed, abs=1e-12)
    assert bars[-1].cash == pytest.approx(cash, rel=1e-12)
    last_mid = QuoteTick.objects.filter(instrument_id=session.instrument_id).order_by("-ts").first()
    assert bars[-1].mid == pytest.approx((last_mid.bid_px + last_mid.ask_px) / 2)
    assert bars[-1].pnl == pytest.approx(bars[-1].cash + bars[-1].inventory * bars[-1].mid)


def test_an_empty_session_has_no_bars():
    with connection.cursor() as cur:
        iid, sid = load(cur, make_record(seed=1, n_quotes=0, n_fills=0), symbol="EMPTY")
        assert session_pnl_on(cur, sid, iid, ns_dt(T0_NS), ns_dt(T0_NS + 60 * NS)) == []


@pytest.mark.parametrize("width", ["1 hour", "0 seconds", "1.5 minutes", "minute", "-1 second", ""])
def test_bad_widths_and_ranges_are_refused(record, width):
    _rec, iid, sid = record
    with connection.cursor() as cur:
        with pytest.raises(ValueError, match="width must be"):
            session_pnl_on(cur, sid, iid, ns_dt(T0_NS), ns_dt(T0_NS + NS), width)
        with pytest.raises(ValueError, match="must be after start"):
            session_pnl_on(cur, sid, iid, ns_dt(T0_NS), ns_dt(T0_NS), "1 second")


def test_a_fill_delivered_twice_is_stored_once_under_the_time_keyed_natural_key(record, tmp_path):
    """The natural key is (session, fill id, ts) so that fills can be a hypertable; ts is the venue's time of the
    fill, so a venue delivering the same fill again later (a reconnect, a journal replay) hits the same key."""
    _rec, iid, sid = record
    before = FillRecord.objects.filter(session_id=sid).count()
    ts = T0_NS + 400 * NS
    fill = Fill(ts, ts + 2_000_000, "c9", "77", Side.BUY, 101.0, 0.5, fee=0.01)
    writer = make_writer(0.05, tmp_path / "spill")
    recorder = Recorder(writer, sid, iid)
    try:
        recorder.fill(fill)
        writer.flush()
        recorder.fill(replace(fill, ts_local_ns=ts + 9 * NS))  # the same fill, received 9 s later
        writer.flush()
        recorder.fill(replace(fill, fill_id="78"))  # another fill at the same instant is another row
        writer.flush()
    finally:
        writer.close()
    rows = FillRecord.objects.filter(session_id=sid, ts=ns_dt(ts))
    assert sorted(rows.values_list("fill_id", "ts_ns")) == [("c9/77", ts + 2_000_000), ("c9/78", ts + 2_000_000)]
    assert FillRecord.objects.filter(session_id=sid).count() == before + 2
    bars = session_pnl(TradingSession.objects.get(pk=sid), end=ns_dt(ts) + timedelta(seconds=1))
    assert bars[-1].n_fills == 2 and bars[-1].buy_size == 1.0


def test_a_range_is_widened_to_whole_buckets_so_both_roads_sum_the_same_fills(record):
    """The continuous aggregates hold whole buckets; an end inside a bucket takes the whole bucket on the raw road
    too (else the two would disagree on the last bucket)."""
    rec, iid, sid = record
    cut = T0_NS + 150 * NS + 500_000_000  # inside the third minute
    with connection.cursor() as cur:
        part = session_pnl_on(cur, sid, iid, ns_dt(T0_NS + 30 * NS), ns_dt(cut), "1 minute")
        whole = session_pnl_on(cur, sid, iid, ns_dt(T0_NS), ns_dt(T0_NS + 180 * NS), "1 minute")
    assert [b.bucket for b in part] == [ns_dt(T0_NS + k * 60 * NS) for k in range(3)]
    assert_rows_equal(as_tuples(part), as_tuples(whole))
    assert part[-1].n_fills == sum(1 for f in rec.fills if T0_NS + 120 * NS <= f[0] < T0_NS + 180 * NS)
