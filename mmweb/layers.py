"""The Channels layer: channels_redis, starting the embedded Redis on first use when ``REDIS_URL`` is unset."""

from __future__ import annotations

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
