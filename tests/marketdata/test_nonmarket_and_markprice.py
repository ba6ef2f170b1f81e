"""Non-market trades (Binance USD-M ``"X"``) and ``@markPrice`` lines: parsing, counting, storing.

The shared recordings hold only ``"X":"MARKET"`` trades and no markPrice stream (grep: 21,313 and 14,076
``"X":"MARKET"`` in the USD-M BTC and ETH files, nothing else; spot trades have no ``X``), so the market line below
is a real one from the USD-M BTCUSDT recording and the others are made by hand in the documented format: the same
line with ``X`` set to ``INSURANCE_FUND`` / ``ADL`` / ``NA`` (and a new id), and markPrice updates
``{"e":"markPriceUpdate","E":…,"s":…,"p":mark,"i":index,"P":est. settle,"r":rate,"T":next funding}``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from apps.engine.market.events import MarkPrice, Side, Trade
from apps.marketdata.parsers import ParseStats, Quarantined, binance_raw, parse_file
from tests.conftest import shared_data

# real: the first trade line of hftbacktest-binance-usdm-btcusdt-20240808/raw/usdm_btcusdt_20240808.gz
REAL_MARKET = (
    '1723161255088176367 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256322,'
    '"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}'
)


def other(x: str, tid: int, local: int = 1723161255100000000, m: str = "true") -> str:
    return (
        f'{local} {{"stream":"btcusdt@trade","data":{{"e":"trade","E":1723161256400,"T":1723161256400,'
        f'"s":"BTCUSDT","t":{tid},"p":"61790.00","q":"0.500","X":"{x}","m":{m}}}}}'
    )


def mark(local: int, e_ms: int, p: str, r: str, t_ms: int | str) -> str:
    t = f'"{t_ms}"' if isinstance(t_ms, str) else str(t_ms)
    return (
        f'{local} {{"stream":"btcusdt@markPrice@1s","data":{{"e":"markPriceUpdate","E":{e_ms},"s":"BTCUSDT",'
        f'"p":"{p}","i":"61801.1","P":"61795.2","r":"{r}","T":{t}}}}}'
    )


def parse(lines: list[str]) -> tuple[list, ParseStats]:
    stats = ParseStats()
    out = list(binance_raw.parse_lines(enumerate(lines, 1), stats=stats))
    return out, stats


def test_the_real_market_trade_is_a_market_trade() -> None:
    (t,), stats = parse([REAL_MARKET])
    assert isinstance(t, Trade) and t.market is True and t.kind == "MARKET"
    assert (t.price, t.size, t.aggressor, t.trade_id) == (61800.30, 0.006, Side.BUY, "5266583935")
    assert stats.non_market_trades == {}


@pytest.mark.parametrize("x", ["INSURANCE_FUND", "ADL", "NA"])
def test_a_non_market_trade_is_marked_and_counted_by_its_label(x: str) -> None:
    (real, t), stats = parse([REAL_MARKET, other(x, 5266583999)])
    assert real.market is True
    assert isinstance(t, Trade) and t.market is False and t.kind == x
    assert (t.price, t.size, t.aggressor) == (61790.0, 0.5, Side.SELL)
    assert stats.events["Trade"] == 2 and stats.non_market_trades == {x: 1}
    assert stats.summary()["non_market_trades"] == {x: 1}


def test_the_checking_road_and_the_fast_road_agree_on_non_market_trades() -> None:
    import orjson

    from apps.marketdata.parsers.common import RecentIds

    line = other("INSURANCE_FUND", 42)
    ts, _, body = line.partition(" ")
    slow = binance_raw.decode_message(orjson.loads(body), int(ts), RecentIds(10))
    ((fast,), _) = parse([line])
    assert slow == fast


def test_a_trade_type_that_is_not_a_string_is_quarantined_naming_the_field() -> None:
    line = other("X", 7).replace('"X":"X"', '"X":3')
    (q,), stats = parse([line])
    assert isinstance(q, Quarantined) and q.reason == "unparsable" and "'X'" in q.detail
    assert stats.quarantined == {"unparsable": 1}


def test_a_mark_price_line_becomes_a_mark_price_event_with_the_event_time_not_the_funding_time() -> None:
    (mp,), stats = parse([mark(1723161255200000000, 1723161256000, "61801.50000000", "0.00010000", 1723190400000)])
    assert isinstance(mp, MarkPrice)
    assert mp.mark_price == 61801.5 and mp.funding_rate == 0.0001
    assert mp.ts_exch_ns == 1723161256000 * 1_000_000  # E, not T
    assert mp.next_funding_ns == 1723190400000 * 1_000_000
    assert stats.events["MarkPrice"] == 1 and stats.quarantined == {}


def test_a_delivery_contract_mark_price_has_no_funding() -> None:
    (mp,), _ = parse([mark(1723161255200000000, 1723161256000, "61801.5", "", "")])
    assert mp.funding_rate == 0.0 and mp.next_funding_ns == 0


def test_a_mark_price_with_a_bad_rate_is_quarantined_naming_the_field() -> None:
    (q,), _ = parse([mark(1723161255200000000, 1723161256000, "61801.5", "abc", 1723190400000)])
    assert isinstance(q, Quarantined) and q.reason == "unparsable" and q.detail.startswith("r is not a number")


def test_the_shared_usdm_recording_holds_only_market_trades() -> None:
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    stats = ParseStats()
    n = sum(1 for e in parse_file("binance-raw", path, stats=stats) if isinstance(e, Trade) and not e.market)
    assert n == 0 and stats.non_market_trades == {} and stats.events["Trade"] == 21_313


def _file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "usdm_mixed.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


H = 3600 * 1000
SETTLE_MS = 1723190400000  # 2024-08-09 08:00 UTC


def mixed_lines() -> list[str]:
    """The first 400 real lines of the USD-M recording, two non-market prints and a mark-price series that
    crosses one funding settlement (rate announced 0.0001, then 0.00012 just before it; paid: 0.00012)."""
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    with gzip.open(path, "rt") as fh:
        real = [next(fh).rstrip("\n") for _ in range(400)]
    last_local = int(real[-1].split(" ", 1)[0])
    extra = [
        other("INSURANCE_FUND", 9_000_000_001, last_local + 1_000),
        other("ADL", 9_000_000_002, last_local + 2_000),
        mark(last_local + 3_000, SETTLE_MS - 2000, "61801.5", "0.00010000", SETTLE_MS),
        mark(last_local + 4_000, SETTLE_MS - 1000, "61802.5", "0.00012000", SETTLE_MS),
        mark(last_local + 5_000, SETTLE_MS + 1000, "61803.5", "0.00003000", SETTLE_MS + 8 * H),
    ]
    return real + extra


@pytest.mark.django_db(transaction=True)
def test_the_importer_stores_settlements_and_leaves_out_non_market_trades_and_says_how_many(tmp_path) -> None:
    from apps.marketdata.importer import ImportOptions
    from apps.marketdata.models import FundingRate, TradeTick
    from apps.marketdata.services import ensure_instrument, import_files

    path = _file(tmp_path, mixed_lines())
    summary = import_files(
        [path],
        fmt="binance-raw",
        venue="binance-usdm",
        symbol="BTCUSDT",
        kind="perp",
        tick_size=0.1,
        lot_size=0.001,
        options=ImportOptions(spill_dir=tmp_path / "spill"),
    )
    f = summary.files[0]
    assert f.non_market_trades == {"ADL": 1, "INSURANCE_FUND": 1}
    assert "non-market trades excluded 2, ADL 1, INSURANCE_FUND 1" in summary.format()
    iid = ensure_instrument("binance-usdm", "BTCUSDT").pk
    market_trades = sum(1 for line in mixed_lines() if '"X":"MARKET"' in line)
    assert TradeTick.objects.filter(instrument_id=iid).count() == market_trades == f.parsed["trades"]
    rows = list(FundingRate.objects.filter(instrument_id=iid).values_list("ts_exch_ns", "rate"))
    assert rows == [(SETTLE_MS * 1_000_000, 0.00012)] and f.parsed["funding"] == 1


@pytest.mark.django_db
def test_estimate_says_how_many_non_market_trades_it_excluded(tmp_path) -> None:
    import io
    import json

    from django.core.management import call_command

    path = _file(tmp_path, mixed_lines())
    out = io.StringIO()
    call_command("estimate", str(path), "--format", "binance-raw", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["non_market_trades_excluded"] == 2
    assert report["trades_seen"] == sum(1 for line in mixed_lines() if '"X":"MARKET"' in line)
    text = io.StringIO()
    call_command("estimate", str(path), "--format", "binance-raw", stdout=text)
    assert "non-market trades excluded 2" in text.getvalue()
