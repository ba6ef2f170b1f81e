"""The order gateway: every path to the venue goes through its check; HALTED lets nothing but cancels out."""

from __future__ import annotations

import pytest

from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.events import BestBidAsk, CancelAll, CancelOrder, ModifyOrder, OrderReject, PlaceOrder, Side
from apps.engine.risk.gateway import Mode, OrderGateway
from tests.engine.variants import VARIANTS, select


@pytest.fixture(autouse=True, params=VARIANTS)
def variant(request, monkeypatch):
    """Every test here runs against the reference venue and driver and against the compiled ones."""
    return select(request.param, monkeypatch, request.module)


@pytest.fixture
def gateway() -> OrderGateway:
    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001), seed=1)
    venue.on_market(BestBidAsk(1, 1, 100.0, 1.0, 100.1, 1.0))
    return OrderGateway(venue, Mode.RUNNING)


def test_a_new_gateway_is_closed_until_the_first_control_check():
    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001), seed=1)
    assert OrderGateway(venue).mode is Mode.HALTED


def test_halted_blocks_places_and_modifies_even_when_called_directly(gateway):
    gateway.mode = Mode.HALTED
    out = gateway.submit([PlaceOrder("a", Side.BUY, 99.0, 0.01), ModifyOrder("b", 99.5, 0.01)], 10, 0.0)
    assert [type(e) for e in out] == [OrderReject, OrderReject]
    assert all("blocked by gateway" in e.reason for e in out)
    assert gateway.venue.open_orders() == [] and gateway.blocked == 2
    assert gateway.venue.advance(10**9) == []  # nothing reached the venue at all


def test_cancels_always_pass(gateway):
    gateway.submit([PlaceOrder("a", Side.BUY, 99.0, 0.01)], 10, 0.0)
    gateway.venue.advance(20)
    gateway.mode = Mode.HALTED
    assert gateway.check(CancelOrder("a"), 0.0) is None and gateway.check(CancelAll(), 0.0) is None


@pytest.mark.parametrize(
    ("position", "side", "size", "allowed"),
    [
        (0.05, Side.SELL, 0.05, True),
        (0.05, Side.SELL, 0.06, False),
        (0.05, Side.BUY, 0.01, False),
        (-0.02, Side.BUY, 0.02, True),
        (-0.02, Side.SELL, 0.01, False),
        (0.0, Side.SELL, 0.01, False),
    ],
)
def test_reducing_lets_out_only_orders_that_shrink_the_position(gateway, position, side, size, allowed):
    gateway.mode = Mode.REDUCING
    assert (gateway.check(PlaceOrder("x", side, 100.0, size), position) is None) is allowed


def test_paused_blocks_new_orders(gateway):
    gateway.mode = Mode.PAUSED
    assert "PAUSED" in gateway.check(PlaceOrder("x", Side.BUY, 99.0, 0.01), 0.0)
