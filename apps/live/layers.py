"""The live page's channel layer: Redis pub/sub, so a snapshot crosses Redis once per web process, not once per
browser.

With the default list-based layer a ``group_send`` to a session's group writes one copy per browser into Redis and
every web process pops each copy with its own round trip: 100 browsers at 10 snapshots/s are 1000 round trips a
second through one receive loop, and its queue is where the latency went (see docs/console-live.md). With pub/sub
the publisher sends one message per snapshot; each web process that has a browser on that session receives it
once and hands it to its local consumers in memory. Nothing is stored in Redis: a process that is not subscribed
misses the message, which is right for latest-wins snapshots (the next one follows) and for page events (a page
loaded later reads the database).

Used only by ``apps.live`` (``SessionLiveConsumer`` and the publisher in ``apps.live.broadcast``); everything
else keeps the default layer.
"""

from __future__ import annotations

from channels_redis.pubsub import RedisPubSubChannelLayer

from mmweb import embedded

LIVE_LAYER = "live"


class LivePubSubLayer(RedisPubSubChannelLayer):
    """channels_redis's pub/sub layer; ``start_embedded=True`` (no ``REDIS_URL``) starts the embedded Redis."""

    def __init__(self, *args: object, start_embedded: bool = False, **kwargs: object) -> None:
        if start_embedded:
            embedded.ensure_redis_once()
        super().__init__(*args, **kwargs)
