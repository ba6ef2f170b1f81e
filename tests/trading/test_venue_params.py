"""The paper venue's ``partial_fills`` switch from a session's and a backtest's params: it reaches the venue's config,
defaults to partial fills, and anything but a JSON boolean is refused naming the field."""

from __future__ import annotations

import pytest

from apps.engine.execution.paper import PaperVenue
from apps.trading.backtest import parse_params
from apps.trading.runtime import build_session_config

GRID = {"tick_size": 0.1, "lot_size": 0.001}


def test_a_session_defaults_to_partial_fills_and_can_turn_them_off() -> None:
    assert build_session_config({}, 1).venue.partial_fills is True
    cfg = build_session_config({"venue": {"partial_fills": False}}, 1).venue
    assert cfg.partial_fills is False
    assert PaperVenue(cfg).config.partial_fills is False


def test_a_backtest_takes_the_switch_from_params_venue() -> None:
    assert parse_params({"venue": GRID}).venue.partial_fills is True
    assert parse_params({"venue": {**GRID, "partial_fills": False}}).venue.partial_fills is False


@pytest.mark.parametrize("bad", ["false", 0, 1, None])
def test_a_non_boolean_partial_fills_is_refused_naming_the_field(bad) -> None:
    with pytest.raises(ValueError, match=r"params\.venue: PaperVenueConfig\.partial_fills must be true or false"):
        build_session_config({"venue": {"partial_fills": bad}}, 1)
    with pytest.raises(ValueError, match=r"params\.venue: PaperVenueConfig\.partial_fills must be true or false"):
        parse_params({"venue": {**GRID, "partial_fills": bad}})
