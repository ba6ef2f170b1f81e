"""A stored backtest reviews as the run it was (issue 13): the page header's P&L equals the P&L panel's last
bucket, the session is labelled with the market its data holds and lives in the data's time, and the printed
summary has units, sensible precision and no annualised Sharpe from minutes of data.

Real recorded data (../shared/data, skipped without it) and simulated data in the binance-raw format (always),
through ``manage.py backtest`` on real PostgreSQL, the real views and the real selector.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.engine.accounting.pnl import PnlBreakdown
from apps.engine.simulation.backtest import MIN_ANNUALISE_SPAN_S, BacktestConfig, BacktestResult
from apps.marketdata.identify import identify
from apps.trading.models import BacktestRun, TradingSession
from apps.trading.selectors import session_pnl
from tests.conftest import shared_data
from tests.trading.test_backtest_command import PARAMS, write_binance_raw

PNL_TOLERANCE = 1e-6  # quote currency: the same fills summed in SQL and in the engine, in a different order
USDM = ("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
# backtests run the live session's risk rules: the recorder's clock was 1.27 s behind the exchange (MANIFEST), past
# the default 1 s skew bound, on which a live loop (and so the backtest) would pull its quotes for the whole run
USDM_PARAMS = {"venue": {"tick_size": 0.1, "lot_size": 0.001}, "risk": {"clock_skew": {"max_abs_skew_ms": 2000.0}}}


def _backtest(*args: str) -> tuple[str, list[BacktestRun]]:
    before = set(BacktestRun.objects.values_list("pk", flat=True))
    out = io.StringIO()
    call_command("backtest", *args, stdout=out)
    runs = list(BacktestRun.objects.exclude(pk__in=before).select_related("session__instrument").order_by("pk"))
    return out.getvalue(), runs


def _header_and_panel(client, session: TradingSession) -> tuple[float, float, str, str]:
    """P&L as the page header states it (the live tile, from the stored state) and as the panel's last bucket
    (the selector behind it), plus both rendered pages."""
    page = client.get(reverse("dashboard:session", args=[session.pk])).content.decode()
    panel = client.get(reverse("dashboard:session_pnl", args=[session.pk]), {"width": "1 second"}).content.decode()
    bars = session_pnl(session, width="1 second")
    return session.last_state["pnl"], bars[-1].pnl, page, panel


def _shown(html: str, element_id: str) -> float:
    m = re.search(rf'id="{element_id}">([^<]+)<', html)
    assert m, element_id
    return float(m.group(1).replace(",", ""))


@pytest.mark.django_db(transaction=True)
def test_backtest_header_pnl_equals_the_panels_last_bucket_on_real_data(client, operator) -> None:
    """The issue's run: the fixed-spread quoter ends holding 0.049 BTC; the panel marked it at the last fill's
    price (61694.3) instead of the data's last mid (61659.75) and showed 3.65 against the header's 1.96."""
    data = shared_data(*USDM)
    out, [run] = _backtest(
        "--data", str(data), "--format", "binance-raw", "--params", json.dumps(USDM_PARAMS), "--strategy", "fixed"
    )
    session = run.session
    assert session.instrument.venue == "binance-usdm" and session.instrument.symbol == "BTCUSDT"
    assert session.instrument.kind == "perp"
    # the data's time (receive clock, 1.27 s behind the exchange's 23:54:16.3 first trade), not today
    assert session.started_at == datetime(2024, 8, 8, 23, 54, 15, 30314, tzinfo=UTC)
    assert datetime(2024, 8, 8, 23, 59, 58, tzinfo=UTC) < session.ended_at < datetime(2024, 8, 9, tzinfo=UTC)

    client.force_login(operator)
    header, panel, page, panel_html = _header_and_panel(client, session)
    assert abs(session.last_state["inventory"]) > 0.01  # the mark decides the P&L
    assert header == pytest.approx(panel, abs=PNL_TOLERANCE)
    assert header == pytest.approx(run.summary["pnl_total"], abs=PNL_TOLERANCE)
    assert session_pnl(session, width="1 minute")[-1].pnl == pytest.approx(header, abs=PNL_TOLERANCE)
    last = session_pnl(session, width="1 second")[-1]
    assert last.mid == session.last_state["mid"] == 61659.75  # a mid the data had
    assert _shown(page, "v-pnl") == round(header, 2) and _shown(panel_html, "pnl-total") == round(panel, 4)
    assert "binance-usdm:BTCUSDT" in page

    # the printout: units, integers with separators, the span, and no annualised Sharpe from 5.75 minutes
    assert "data: binance-usdm:BTCUSDT, 93,954 events" in out
    assert re.search(r"span 5 min 4\d s \(2024-08-08 23:54:15 to 2024-08-08 23:59:5\d UTC\)", out)
    rows = {line.split("|")[0].strip(): line.split("|")[1].strip() for line in out.splitlines() if "|" in line}
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", rows["events per second (backtest only)"])
    assert rows["P&L total (USDT)"] == f"{run.summary['pnl_total']:,.2f}"
    assert rows["Sharpe annualised (needs >= 1 day of data)"] == "n/a (< 1 day)"
    assert run.summary["sharpe_annualised"] is None and run.summary["sharpe_per_interval"] is not None
    assert re.fullmatch(r"-?\d\.\d{3}", rows["Sharpe per interval (1 s, not annualised)"])
    assert "volume (BTC)" in rows and "max drawdown (USDT)" in rows


@pytest.mark.django_db(transaction=True)
def test_backtest_header_pnl_equals_the_panels_last_bucket_on_simulated_data(client, operator, tmp_path) -> None:
    """The same identity without ../shared: every strategy, a market whose quotes are not stored anywhere."""
    data = write_binance_raw(tmp_path / "sim.txt", 60, seed=5)
    _out, runs = _backtest("--data", str(data), "--format", "binance-raw", "--params", json.dumps(PARAMS), "--compare")
    client.force_login(operator)
    assert any(abs(r.session.last_state["inventory"]) > 0 for r in runs), "every run flat: the test proves little"
    for run in runs:
        header, panel, _page, _panel = _header_and_panel(client, run.session)
        assert header == pytest.approx(panel, abs=PNL_TOLERANCE), run.strategy
        assert run.summary["pnl_total"] == pytest.approx(panel, abs=PNL_TOLERANCE), run.strategy


def _result(span_s: float) -> BacktestResult:
    pnl = [PnlBreakdown(i * 10**9, 100.0, 0.0, 0.0, v, v, 0.0, 0.0, 0.0, 0.0) for i, v in enumerate([0, 1, 3, 2, 5])]
    return BacktestResult("t", BacktestConfig(), 0.1, None, pnl=pnl, first_ts_ns=0, last_ts_ns=int(span_s * 1e9))


def test_the_sharpe_ratio_is_annualised_only_from_a_day_of_data() -> None:
    short, day = _result(345.0).summary(timing=False), _result(MIN_ANNUALISE_SPAN_S).summary(timing=False)
    assert short["sharpe_per_interval"] == day["sharpe_per_interval"] > 0
    assert short["sharpe_annualised"] is None
    assert day["sharpe_annualised"] == pytest.approx(day["sharpe_per_interval"] * (365 * 86400) ** 0.5)


@pytest.mark.parametrize(
    ("fmt", "parts", "label", "kind"),
    [
        ("binance-raw", USDM, "binance-usdm:BTCUSDT", "perp"),
        (
            "binance-raw",
            ("hftbacktest-binance-usdm-ethusdt-20240808", "raw", "usdm_ethusdt_20240808.gz"),
            "binance-usdm:ETHUSDT",
            "perp",
        ),
        (
            "binance-raw",
            ("hftbacktest-binance-spot-btcusdt-20240808", "raw", "spot_btcusdt_20240808.gz"),
            "binance-spot:BTCUSDT",
            "spot",
        ),
        (
            "tardis",
            ("tardis-binance-futures-btcusdt-20200222", "binance-futures_trades_BTCUSDT_2020-02-22.csv.gz"),
            "binance-usdm:BTCUSDT",
            "perp",
        ),
        (
            "hyperliquid",
            ("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz"),
            "hyperliquid:BTC",
            "perp",
        ),
        (
            "lobster",
            ("lobster-amzn-20120621-level1", "AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"),
            "nasdaq:AMZN",
            "spot",
        ),
    ],
)
def test_recorded_files_name_their_instrument(fmt: str, parts: tuple[str, ...], label: str, kind: str) -> None:
    found = identify([shared_data(*parts)], fmt)
    assert found is not None and found.label() == label and found.kind == kind


def test_files_of_two_instruments_are_refused() -> None:
    btc = shared_data(*USDM)
    eth = shared_data("hftbacktest-binance-usdm-ethusdt-20240808", "raw", "usdm_ethusdt_20240808.gz")
    with pytest.raises(ValueError, match=r"different instruments: binance-usdm:BTCUSDT .*binance-usdm:ETHUSDT"):
        identify([btc, eth], "binance-raw")


def test_a_file_whose_records_name_no_instrument_is_not_guessed(tmp_path: Path) -> None:
    bare = tmp_path / "bare.txt"
    bare.write_text('1723161254087896568 {"e":"bookTicker","u":1,"b":"1.0","B":"1","a":"1.1","A":"1"}\n')
    assert identify([bare], "binance-raw") is None
