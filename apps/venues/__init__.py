"""Connectors to real venues (issue 19): market-data feeds and trading, each behind the engine's feed and venue
interfaces, proven against local servers that replay recorded messages (the exchanges are unreachable here).

* ``apps.venues.binance``: Binance USD-M and spot market data (combined streams, REST depth snapshot, book sync).
* ``apps.venues.hyperliquid``: Hyperliquid perps market data and trading.
"""
