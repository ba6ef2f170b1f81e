"""Turn a stored session (params JSON + seed) into the engine objects that run it, validating every value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from apps.engine.core import StrategyParams
from apps.engine.execution.paper import PaperVenueConfig
from apps.engine.simulation.simulator import SimulatorParams

SECTIONS = ("sim", "strategy", "venue", "risk", "feed", "replay")
# where a live loop's market events come from: the seeded simulator (or params.replay), or Binance's public
# market data for the session's instrument (paper trading on live data: the venue is the paper venue either way)
# or Hyperliquid's stream, whose connector is also the venue (a LIVE session: real orders)
FEED_SOURCES = ("simulator", "binance", "hyperliquid")
BINANCE_VENUES = ("binance-usdm", "binance-spot")


@dataclass(frozen=True)
class SessionConfig:
    sim: SimulatorParams
    strategy: StrategyParams
    venue: PaperVenueConfig
    seed: int
    risk: dict[str, Any]
    outages: tuple[tuple[float, float], ...] = ()
    backoff: Any = None
    replay: dict[str, Any] | None = None
    feed_source: str = "simulator"  # params.feed.source: "simulator" (or a replay), or "binance" (live data)


def _build(cls: type, section: str, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"params.{section} must be an object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"params.{section}: unknown parameter(s) {unknown}")
    try:
        obj = cls(**data)
        obj.validate()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params.{section}: {exc}") from exc
    return obj


def _strategy(data: Any) -> StrategyParams:
    """The flat ``strategy`` dict sessions store (StrategyParams nests the quoter's fields; from_dict maps them)."""
    if not isinstance(data, dict):
        raise ValueError(f"params.strategy must be an object, got {type(data).__name__}")
    try:
        return StrategyParams.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params.strategy: {exc}") from exc


def build_session_config(params: dict[str, Any], seed: int) -> SessionConfig:
    if not isinstance(params, dict):
        raise ValueError(f"params must be an object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise ValueError(f"params: unknown section(s) {unknown}; expected {list(SECTIONS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    sim = _build(SimulatorParams, "sim", params.get("sim", {}))
    venue_data = {"tick_size": sim.tick_size, "lot_size": sim.lot_size, **params.get("venue", {})}
    venue = _build(PaperVenueConfig, "venue", venue_data)
    strategy = _strategy(params.get("strategy", {}))
    risk = params.get("risk", {})
    from apps.engine.risk.session import build_risk_engine

    build_risk_engine(risk, strategy.max_inventory)  # validates; the loop builds its own instance
    feed = params.get("feed", {})
    if not isinstance(feed, dict) or set(feed) - {"outages", "backoff", "source"}:
        raise ValueError("params.feed must be an object with optional 'outages', 'backoff' and 'source'")
    source = feed.get("source", "simulator")
    if source not in FEED_SOURCES:
        raise ValueError(f"params.feed.source must be one of {list(FEED_SOURCES)}, got {source!r}")
    try:
        outages = tuple((float(a), float(b)) for a, b in feed.get("outages", []))
    except (TypeError, ValueError):
        raise ValueError("params.feed.outages must be a list of [start_s, duration_s] pairs") from None
    from apps.engine.market.feeds import BackoffParams

    backoff = _build(BackoffParams, "feed.backoff", feed.get("backoff", {}))
    replay = params.get("replay")
    if replay is not None:
        _check_replay(replay)
        if source != "simulator":
            raise ValueError(f"params.feed.source: a replay plays its recording, not {source!r}")
    return SessionConfig(
        sim=sim,
        strategy=strategy,
        venue=venue,
        seed=seed,
        risk=risk,
        outages=outages,
        backoff=backoff,
        replay=replay,
        feed_source=source,
    )


def _check_replay(replay: Any) -> None:
    """params.replay: {"files": [...], "format": F[, "max_events": N]} or {"instrument_id", "start_ns", "end_ns"}."""
    if not isinstance(replay, dict):
        raise ValueError("params.replay must be an object")
    if "files" in replay:
        from apps.marketdata.parsers import FORMATS

        if replay.get("format") not in FORMATS:
            raise ValueError(f"params.replay.format must be one of {sorted(FORMATS)}, got {replay.get('format')!r}")
        if not isinstance(replay["files"], list) or not replay["files"]:
            raise ValueError("params.replay.files must be a non-empty list of paths")
    elif {"instrument_id", "start_ns", "end_ns"} <= set(replay):
        if not all(isinstance(replay[k], int) for k in ("instrument_id", "start_ns", "end_ns")):
            raise ValueError("params.replay instrument_id, start_ns and end_ns must be integers")
        if replay["end_ns"] <= replay["start_ns"]:
            raise ValueError("params.replay.end_ns must be after start_ns")
    else:
        raise ValueError("params.replay needs either files+format or instrument_id+start_ns+end_ns")


def build_feed(config: SessionConfig, instrument: Any, now_ns: int) -> tuple[Any, PaperVenueConfig, float, float]:
    """The live loop's feed, its venue config and the (tick, lot) grid: the seeded simulator starting at
    ``now_ns``, or a recording (``params.replay``) re-stamped so its first event happens at ``now_ns`` on the
    instrument's grid. Either is wrapped to reconnect with back-off after a drop. With ``params.feed.source =
    "binance"`` it is a started :class:`~apps.venues.binance.connector.BinanceFeed` of the instrument (its own
    connector reconnects with back-off and resynchronises the book; ``close()`` stops it), on the instrument's
    grid: paper trading on live data."""
    from apps.engine.market.feeds import Backoff, ReconnectingFeed, ReplayingFeed, SimulatedFeed
    from apps.engine.simulation.simulator import MarketSimulator

    tick, lot, venue = config.sim.tick_size, config.sim.lot_size, config.venue
    if config.feed_source == "hyperliquid":
        return (
            build_hyperliquid_feed(config, instrument, now_ns),
            _on_grid(config.venue, instrument),
            *_grid(instrument),
        )
    if config.feed_source == "binance":
        return build_binance_feed(config, instrument), _on_grid(config.venue, instrument), *_grid(instrument)
    if config.replay is not None:
        tick, lot = instrument.tick_size, instrument.lot_size
        venue = dataclasses.replace(config.venue, tick_size=tick, lot_size=lot)
        feed: Any = ReplayingFeed(load_replay(config.replay, instrument.pk), now_ns)
    else:
        sim = MarketSimulator(dataclasses.replace(config.sim, start_ts_ns=now_ns), seed=config.seed)
        feed = SimulatedFeed(sim, now_ns, config.outages)
    return ReconnectingFeed(feed, Backoff(config.backoff, seed=config.seed)), venue, tick, lot


def _grid(instrument: Any) -> tuple[float, float]:
    return float(instrument.tick_size), float(instrument.lot_size)


def _on_grid(venue: PaperVenueConfig, instrument: Any) -> PaperVenueConfig:
    tick, lot = _grid(instrument)
    return dataclasses.replace(venue, tick_size=tick, lot_size=lot)


def build_binance_feed(config: SessionConfig, instrument: Any) -> Any:
    """A started Binance connector for the instrument's symbol (URLs from the MM_BINANCE_* settings), as a feed."""
    from apps.venues.binance.connector import BinanceConnector, BinanceFeed

    if instrument.venue not in BINANCE_VENUES:
        raise ValueError(
            f"params.feed.source 'binance' needs a Binance instrument ({', '.join(BINANCE_VENUES)}), "
            f"not {instrument.venue}:{instrument.symbol}"
        )
    connector = BinanceConnector(instrument.venue, [instrument.symbol], backoff=config.backoff, seed=config.seed)
    return BinanceFeed(connector.start(), instrument.symbol)


def build_hyperliquid_feed(config: SessionConfig, instrument: Any, now_ns: int) -> Any:
    """A started Hyperliquid venue for the instrument's coin as the loop's feed (its ``venue`` is the loop's venue).

    Network and URLs from the MM_HYPERLIQUID_* settings, the key from the environment (``credentials_from_env``),
    back-off from ``params.feed.backoff``. ``quoting_mode`` rounds prices by the venue's rules and keeps the
    dead-man's switch armed while orders are out. Orders of ours a dead run left on the coin are cancelled first.
    """
    from apps.venues.hyperliquid.feed import HyperliquidFeed
    from apps.venues.hyperliquid.secrets import credentials_from_env
    from apps.venues.hyperliquid.venue import HyperliquidVenue, config_from_settings

    if instrument.venue != "hyperliquid":
        raise ValueError(
            f"params.feed.source 'hyperliquid' needs a Hyperliquid instrument, "
            f"not {instrument.venue}:{instrument.symbol}"
        )
    cfg = config_from_settings(instrument.symbol, backoff=config.backoff, quoting_mode=True)
    venue = HyperliquidVenue(cfg, credentials_from_env(), seed=config.seed)
    venue.start()
    try:
        venue.cancel_all_now(now_ns)  # a dead run's orders: the tracker starts empty, so must the venue
    except BaseException:
        venue.stop()
        raise
    return HyperliquidFeed(venue)


def build_venue(config: SessionConfig, feed: Any, venue_config: PaperVenueConfig) -> Any:
    """The loop's venue: the live connector when the feed is one (``feed.venue``), else the paper venue."""
    live = getattr(feed, "venue", None)
    if config.feed_source == "hyperliquid" and live is not None:
        return live
    from apps.engine.execution.paper import PaperVenue

    return PaperVenue(venue_config, seed=config.seed)


def load_replay(replay: dict[str, Any], instrument_id: int) -> list[Any]:
    """The recorded market events a replay session plays: parsed files, or a stored time range."""
    from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Trade

    market = (Trade, BestBidAsk, DepthUpdate, DepthSnapshot)
    limit = int(replay.get("max_events", 10**7))
    out: list[Any] = []
    if "files" in replay:
        from apps.marketdata.parsers import parse_file

        for path in replay["files"]:
            out.extend(e for e in parse_file(replay["format"], path) if isinstance(e, market))
        out.sort(key=lambda e: e.ts_local_ns)
    else:
        from apps.marketdata.selectors import iter_events

        out = [e for e in iter_events(instrument_id, replay["start_ns"], replay["end_ns"]) if isinstance(e, market)]
    return out[:limit]
