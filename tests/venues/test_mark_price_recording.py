"""A live feed's mark-price updates are announcements, not payments: the recording sink stores one funding row per
settlement (as the importer does), so a replay of the stored range pays each funding once."""

from __future__ import annotations

import pytest

from apps.engine.market.events import MarkPrice
from apps.marketdata.models import FundingRate
from apps.marketdata.parsers.binance_raw import decode_message
from apps.trading.recording import Recorder, RecorderSink, make_writer

HOUR_NS = 3_600_000_000_000
T0 = 1_722_470_400_000_000_000  # 2024-08-01 00:00 UTC, a funding time


def _mark(ts_ns: int, rate: float, next_ns: int) -> MarkPrice:
    return MarkPrice(ts_ns, ts_ns + 1_000_000, 60_000.0, rate, next_ns)


def test_the_connector_decodes_mark_price_as_an_announcement_not_a_payment():
    msg = {
        "stream": "btcusdt@markPrice@1s",
        "data": {
            "e": "markPriceUpdate",
            "E": 1722466800000,
            "s": "BTCUSDT",
            "p": "64123.50",
            "P": "64130.1",
            "i": "64140.2",
            "r": "0.00010000",
            "T": 1722470400000,
        },
    }
    ev = decode_message(msg, 1722466800001000000, None)
    assert type(ev) is MarkPrice and ev.funding_rate == 0.0001 and ev.next_funding_ns == T0


@pytest.mark.django_db(transaction=True)
def test_the_recording_sink_stores_one_funding_row_per_settlement():
    from apps.control.services import Actor, create_paper_session

    session = create_paper_session(Actor(label="t"), name="marks", seed=5, start=False)
    writer = make_writer(0.05, None)
    sink = RecorderSink(Recorder(writer, session.pk, session.instrument_id), record_market=True)
    writer.start()
    try:
        # one update a second for the last three seconds before T0 (the rate moves), then three after it:
        # the rate paid at T0 is the last one announced before it
        for i, rate in enumerate((0.0001, 0.00012, 0.00015)):
            sink.market(_mark(T0 - (3 - i) * 1_000_000_000, rate, T0))
        for i in range(3):
            sink.market(_mark(T0 + i * 1_000_000_000, 0.00009, T0 + 8 * HOUR_NS))
    finally:
        writer.close()
    rows = list(FundingRate.objects.filter(instrument_id=session.instrument_id).values_list("ts_exch_ns", "rate"))
    assert rows == [(T0, 0.00015)]
