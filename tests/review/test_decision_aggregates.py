"""The decision aggregates behind the fill-rate and spreads panels: they agree with a direct computation from the
decisions (hand-worked numbers and the un-aggregated SQL path), sessions stored before them are built on their first
read, decisions recorded later are folded in incrementally, one stored out of time order forces a rebuild, and a
read with nothing new costs a fixed number of queries."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import numpy as np
import pytest

from apps.review import analytics_data
from apps.review import decision_aggregates as aggregates
from apps.review.models import DecisionAggregateState, DecisionSecond, DecisionValueBin
from apps.trading.models import FillRecord, QuoteDecisionRecord, TradingSession
from tests.review.test_analytics import DECISIONS, _at, _hand_built


@pytest.fixture
def hand(db) -> TradingSession:
    return _hand_built("AGG")


def _add_decisions(session: TradingSession, rows: list[tuple[float, float, float | None, float | None]]) -> None:
    """Decisions ``(seconds after T0, mid, bid bps, ask bps)``, as the hand-built session's; the market's spread is
    ``mid·spread_bps`` wide with a spread that varies with the time, so that the histograms have more than one bin."""
    for s, mid, bid_bps, ask_bps in rows:
        ts, ns = _at(s)
        half = mid * (0.5 + (s % 7) / 10) / 1e4
        QuoteDecisionRecord.objects.create(
            session=session,
            ts=ts,
            ts_ns=ns,
            mid=mid,
            bid_px=None if bid_bps is None else mid * (1 - bid_bps / 1e4),
            ask_px=None if ask_bps is None else mid * (1 + ask_bps / 1e4),
            bid_size=1.0,
            ask_size=1.0,
            inputs={"mid": mid, "best_bid": mid - half, "best_ask": mid + half},
        )


def _random_rows(rng: np.random.Generator, start_s: float, n: int) -> list[tuple[float, float, float, float]]:
    """``n`` decisions from ``start_s`` on, 0.05–2 s apart, distances 0.2–8 bps (each side missing now and then)."""
    t = start_s + np.cumsum(rng.uniform(0.05, 2.0, n))
    mid = 100 + np.cumsum(rng.normal(0, 0.01, n))
    bid, ask = rng.uniform(0.2, 8.0, n), rng.uniform(0.2, 8.0, n)
    return [
        (
            round(float(t[i]), 6),
            float(mid[i]),
            None if i % 11 == 3 else float(bid[i]),
            None if i % 13 == 5 else float(ask[i]),
        )
        for i in range(n)
    ]


def _direct_quote_time(session: TradingSession, bin_bps: float, max_bps: float) -> tuple[dict, dict]:
    """The un-aggregated path: a LEAD window over every decision, bucketed by ``width_bucket``."""
    edges = analytics_data.analytics.distance_edges_bps(bin_bps, max_bps)
    span = analytics_data.session_span(session)
    params = {"sid": session.pk, "edges": [float(e) for e in edges], "end": span.end}
    return analytics_data._quote_time_direct(params, edges.size - 1)


def _assert_quote_time_matches_direct(session: TradingSession, bin_bps: float, max_bps: float) -> None:
    out = analytics_data.load_fill_rate(session, bin_bps=bin_bps, max_bps=max_bps)
    time_s, outside_s = _direct_quote_time(session, bin_bps, max_bps)
    for side, name in ((1, "bid"), (-1, "ask")):
        assert out["sides"][name]["quote_time_s"] == pytest.approx(list(time_s[side]), abs=1e-6), (name, bin_bps)
        assert out["sides"][name]["quote_time_outside_s"] == pytest.approx(outside_s[side], abs=1e-6)


def test_a_session_stored_before_the_aggregates_is_built_on_its_first_read(hand):
    assert not DecisionAggregateState.objects.filter(session=hand).exists()
    out = analytics_data.load_fill_rate(hand, bin_bps=1.0, max_bps=5.0)
    assert out["sides"]["bid"]["quote_time_s"] == pytest.approx([0, 70, 0, 30, 0])
    state = DecisionAggregateState.objects.get(session=hand)
    assert state.n_decisions == len(DECISIONS) and state.last_ts == _at(DECISIONS[-1][0])[0]
    # one row per (quantity, fine bin) and one per second with a decision (4 decisions, 4 different seconds)
    assert DecisionSecond.objects.filter(session=hand).count() == 4
    # our bid at 1.5 bps (the fine bins 149 or 150, by rounding): decisions at 0 s (10 s in force) and 40 s (60 s);
    # the one at 100 s is counted but still open
    bid = DecisionValueBin.objects.filter(session=hand, kind=aggregates.KIND_BID, k__in=(149, 150))
    assert sum(b.n for b in bid) == 3 and sum(b.seconds for b in bid) == pytest.approx(70.0)
    assert sum(b.weighted_sum for b in bid) == pytest.approx(1.5 * 70, rel=1e-9)


def test_spreads_match_a_direct_computation_on_the_hand_built_session(hand):
    out = analytics_data.load_spreads(hand)
    # ours per decision: 4 bps (0–10 s), 6 bps (10–40 s), none (no ask, 40–100 s), 3 bps (at 100 s, for 0 s);
    # the market's: 0.02/mid, i.e. 1e4·0.02/100 = 2 bps, 1.996, 2.002, 1.998 bps, for 10, 30, 60, 0 s
    mids = [d[1] for d in DECISIONS]
    market = [1e4 * 0.02 / m for m in mids]
    assert out["bucket_s"] == 1.0  # 100 s over at most 300 points: whole seconds
    assert out["series"]["t_s"] == [_at(d[0])[0].timestamp() for d in DECISIONS]
    ours_mean = out["series"]["ours_mean_bps"]
    assert ours_mean[2] is None and [ours_mean[i] for i in (0, 1, 3)] == pytest.approx([4.0, 6.0, 3.0], rel=1e-9)
    assert out["series"]["ours_min_bps"] == ours_mean == out["series"]["ours_max_bps"]
    assert out["series"]["market_max_bps"] == pytest.approx(market, rel=1e-9)
    # the range: 1.05 × the larger per-decision 99th percentile, percentile_cont of ours {3, 4, 6}: 4 + 0.98·2
    hi = 4 + 0.98 * 2
    edges = out["histogram"]["edges_bps"]
    assert edges[-1] == pytest.approx(hi * 1.05, rel=2 * aggregates.SPREAD_RATIO) and len(edges) == 41
    want_ours, want_market = np.zeros(40), np.zeros(40)
    for x, secs in ((4.0, 10), (6.0, 30), (3.0, 0)):
        want_ours[np.searchsorted(edges, x, side="right") - 1] += secs
    for x, secs in zip(market, (10, 30, 60, 0), strict=True):
        want_market[np.searchsorted(edges, x, side="right") - 1] += secs
    ours, mkt = out["histogram"]["ours"], out["histogram"]["market"]
    assert ours["seconds"] == pytest.approx(list(want_ours)) and mkt["seconds"] == pytest.approx(list(want_market))
    assert ours["seconds_total"] == 40.0 and mkt["seconds_total"] == 100.0
    assert ours["time_weighted_mean_bps"] == pytest.approx((4 * 10 + 6 * 30) / 40, rel=1e-12)
    assert mkt["time_weighted_mean_bps"] == pytest.approx(
        sum(x * s for x, s in zip(market, (10, 30, 60, 0), strict=True)) / 100, rel=1e-12
    )
    centres = 0.5 * (np.array(edges[:-1]) + np.array(edges[1:]))
    # 25 % of the time is at 4 bps, 75 % at 6: the median is the centre of 6's bucket, p5 that of 4's
    assert ours["quantiles_bps"]["p50"] == pytest.approx(centres[np.searchsorted(edges, 6.0, side="right") - 1])
    assert ours["quantiles_bps"]["p5"] == pytest.approx(centres[np.searchsorted(edges, 4.0, side="right") - 1])


def test_decisions_recorded_after_a_read_are_folded_in_and_agree_with_the_direct_path(hand):
    rng = np.random.default_rng(18)
    analytics_data.load_fill_rate(hand)  # built on 4 decisions
    t = 100.0
    for step in range(3):  # a running session: more decisions (and a fill) between reads
        rows = _random_rows(rng, t, 200)
        _add_decisions(hand, rows)
        t = rows[-1][0]
        ts, ns = _at(t + 0.5)
        FillRecord.objects.create(
            session=hand, ts=ts, ts_ns=ns, client_order_id=f"x{step}", fill_id=f"x{step}", side=1, price=99.0, size=1
        )
        for bin_bps, max_bps in ((1.0, 5.0), (0.25, 6.0), (2.0, 20.0)):
            _assert_quote_time_matches_direct(hand, bin_bps, max_bps)
    state = DecisionAggregateState.objects.get(session=hand)
    assert state.n_decisions == 4 + 600 == QuoteDecisionRecord.objects.filter(session=hand).count()
    # the folded aggregates equal a build from scratch of the same decisions
    folded = sorted(DecisionValueBin.objects.filter(session=hand).values_list("kind", "k", "n", "seconds"))
    seconds = sorted(DecisionSecond.objects.filter(session=hand).values_list("second", "n_ours", "max_market"))
    state.delete()
    DecisionValueBin.objects.filter(session=hand).delete()
    DecisionSecond.objects.filter(session=hand).delete()
    aggregates.catch_up(hand.pk)
    rebuilt = sorted(DecisionValueBin.objects.filter(session=hand).values_list("kind", "k", "n", "seconds"))
    assert [r[:3] for r in folded] == [r[:3] for r in rebuilt]
    assert [r[3] for r in folded] == pytest.approx([r[3] for r in rebuilt], abs=1e-9)
    assert seconds == sorted(DecisionSecond.objects.filter(session=hand).values_list("second", "n_ours", "max_market"))
    # the spreads' exact parts against SQL straight on the decisions
    out = analytics_data.load_spreads(hand)
    ((mean_ours, secs_ours),) = _direct_ours(hand)
    assert out["histogram"]["ours"]["seconds_total"] == pytest.approx(secs_ours, abs=1e-6)
    assert out["histogram"]["ours"]["time_weighted_mean_bps"] == pytest.approx(mean_ours, rel=1e-9)


def _direct_ours(session: TradingSession) -> list[tuple]:
    """Time-weighted mean and total seconds of our spread, straight from the decisions (the direct computation)."""
    span = analytics_data.session_span(session)
    return analytics_data._rows(
        f"""WITH w AS (SELECT 1e4 * (ask_px - bid_px) / mid AS x,
                              EXTRACT(EPOCH FROM LEAD(ts, 1, %(end)s) OVER (ORDER BY ts, id) - ts)::float8 AS dt
                       FROM {analytics_data.DECISIONS} WHERE session_id = %(sid)s)
            SELECT sum(x * dt) / sum(dt), sum(dt) FROM w WHERE x IS NOT NULL""",
        {"sid": session.pk, "end": span.end},
    )


def test_a_decision_stored_out_of_time_order_rebuilds_the_aggregates(hand):
    analytics_data.load_fill_rate(hand)
    _add_decisions(hand, [(25, 100.05, 0.5, 7.5)])  # inside the folded range, stored after it was folded
    _assert_quote_time_matches_direct(hand, 1.0, 10.0)
    state = DecisionAggregateState.objects.get(session=hand)
    assert state.n_decisions == 5 and state.last_ts == _at(100)[0]


def test_a_bin_width_the_fine_bins_do_not_tile_is_computed_from_the_decisions(hand):
    assert analytics_data.fine_multiple(1.0) == 100 and analytics_data.fine_multiple(0.25) == 25
    assert analytics_data.fine_multiple(0.333) is None and analytics_data.fine_multiple(0.001) is None
    _add_decisions(hand, _random_rows(np.random.default_rng(7), 100.0, 100))
    _assert_quote_time_matches_direct(hand, 0.333, 5.0)  # the direct path itself, through load_fill_rate
    assert not DecisionAggregateState.objects.filter(session=hand).exists()  # it never built the aggregates


def test_a_read_with_nothing_new_costs_a_fixed_number_of_queries(hand, django_assert_num_queries):
    _add_decisions(hand, _random_rows(np.random.default_rng(3), 100.0, 300))
    analytics_data.load_spreads(hand)  # builds
    # span, count, catch-up (savepoint, lock, state, out-of-order check, fold, savepoint release), series, bins,
    # the open tail
    with django_assert_num_queries(11):
        first = analytics_data.load_spreads(hand)
    with django_assert_num_queries(11):
        assert analytics_data.load_spreads(hand) == first
    assert not math.isnan(first["histogram"]["ours"]["seconds_total"])


def test_the_spreads_series_buckets_whole_seconds_and_stays_within_the_points(hand):
    _add_decisions(hand, _random_rows(np.random.default_rng(5), 100.0, 400))
    for points in (2, 7, 300):
        out = analytics_data.load_spreads(hand, n_points=points)
        t = out["series"]["t_s"]
        assert 1 <= len(t) <= points and out["bucket_s"] == int(out["bucket_s"])
        assert all(b - a >= out["bucket_s"] - 1e-6 for a, b in itertools.pairwise(t))
    # every decision with both quotes is counted once across the buckets' minima and maxima
    span = analytics_data.session_span(hand)
    ((lo, hi),) = analytics_data._rows(
        f"SELECT min(1e4 * (ask_px - bid_px) / mid), max(1e4 * (ask_px - bid_px) / mid) FROM {analytics_data.DECISIONS}"
        " WHERE session_id = %(sid)s",
        {"sid": hand.pk},
    )
    out = analytics_data.load_spreads(hand, n_points=7)
    assert min(x for x in out["series"]["ours_min_bps"] if x is not None) == pytest.approx(lo, rel=1e-12)
    assert max(x for x in out["series"]["ours_max_bps"] if x is not None) == pytest.approx(hi, rel=1e-12)
    assert span.end - span.start > timedelta(seconds=100)


def test_the_beat_folds_live_and_just_ended_sessions_and_leaves_old_ones_to_their_first_read(hand):
    from django.conf import settings
    from django.utils import timezone

    from apps.review.tasks import fold_decisions

    schedule = {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "apps.review.tasks.fold_decisions" in schedule
    old = _hand_built("OLD")
    TradingSession.objects.filter(pk=hand.pk).update(status="running", ended_at=None)
    TradingSession.objects.filter(pk=old.pk).update(status="stopped", ended_at=timezone.now() - timedelta(hours=2))
    fold_decisions.apply()  # the task as the beat sends it, run eagerly
    assert DecisionAggregateState.objects.get(session=hand).n_decisions == len(DECISIONS)
    assert not DecisionAggregateState.objects.filter(session=old).exists()
    # a session that has just ended (a finished backtest) is folded too, and its first read adds nothing more
    TradingSession.objects.filter(pk=old.pk).update(ended_at=timezone.now())
    assert aggregates.fold_recent()[old.pk] == len(DECISIONS)
    analytics_data.load_fill_rate(old, bin_bps=1.0, max_bps=5.0)
    assert DecisionAggregateState.objects.get(session=old).n_decisions == len(DECISIONS)
