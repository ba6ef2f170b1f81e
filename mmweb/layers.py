"""The Channels layer: channels_redis, starting the embedded Redis on first use when ``REDIS_URL`` is unset."""

from __future__ import annotations

import asyncio
import collections
import functools

from channels_redis.core import BoundedQueue, ChannelLock
from channels_redis.core import RedisChannelLayer as _RedisChannelLayer

from mmweb import embedded


class RedisChannelLayer(_RedisChannelLayer):
    """``channels_redis``'s layer; ``start_embedded=True`` (settings: no ``REDIS_URL``) starts the embedded Redis.

    Channels builds a layer the first time ``get_channel_layer()`` is called in a process, which is exactly when
    Redis is first needed; a process that never broadcasts or serves a socket never starts a server.
    """

    def __init__(self, *args: object, start_embedded: bool = False, **kwargs: object) -> None:
        if start_embedded:
            embedded.ensure_redis_once()
        super().__init__(*args, **kwargs)

    _receiving_loop: asyncio.AbstractEventLoop | None = None

    async def receive(self, channel: str) -> dict:
        """channels_redis's ``receive``, after forgetting what an event loop that has since closed left behind.

        The layer is one object per process, but its receive bookkeeping (a count, a receive lock, per-channel
        cleanup locks, detached cleanup tasks and the buffered messages) binds to the event loop that first
        used it. Under daphne there is one loop for the process's life. Where loops come and go (each
        ``async_to_sync`` call, in Celery tasks, management commands and tests, runs its own and closes it), a
        consumer or a cleanup task cut off by its loop's close leaves a lock held by the dead loop, and every
        later receive from another loop fails with "bound to a different event loop". A closed loop's waiters
        and tasks can never run again, so once the loop that owns the bookkeeping is closed, it starts afresh;
        a loop that is still running is never touched."""
        loop = asyncio.get_running_loop()
        owner = self._receiving_loop
        if owner is not loop and (owner is None or owner.is_closed()):
            if owner is not None:
                self._forget_closed_loop()
            self._receiving_loop = loop
        return await super().receive(channel)

    def _forget_closed_loop(self) -> None:
        self.receive_count = 0
        self.receive_lock = None
        self.receive_event_loop = None
        self.receive_buffer = collections.defaultdict(functools.partial(BoundedQueue, self.capacity))
        self.receive_cleaners = []
        self.receive_clean_locks = ChannelLock()
