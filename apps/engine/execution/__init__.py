"""Our orders: the order state machine and tracker, the paper venue with its queue-aware fill model
and latency models."""
