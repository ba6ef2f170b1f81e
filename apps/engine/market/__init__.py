"""Market state: event types, the L2 book and its exchange synchronisation, feed plumbing."""
