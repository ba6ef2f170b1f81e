"""Binance public market data: the combined-stream connector, local book synchronisation and the engine feed
(docs/venues-binance.md)."""
