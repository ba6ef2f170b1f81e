"""Hyperliquid perps: market data and trading behind the paper venue's operations (see ``docs/venues-hyperliquid.md``).

* :mod:`.rules`: price and size rules from ``meta``. * :mod:`.secrets`: the key from the environment.
* :mod:`.http`: info and signed exchange requests. * :mod:`.ws`: the WebSocket with heartbeats and back-off.
* :mod:`.venue`: :class:`~.venue.HyperliquidVenue`, the adapter, with reconciliation after every reconnect.
"""
