"""Read settings from the environment, failing loudly and precisely on bad values."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit


class ConfigError(RuntimeError):
    """A setting in the environment is malformed; the message names the variable and the value."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is above the maximum {maximum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{name}={raw!r} is empty; give a comma-separated list")
    return items


def parse_database_url(url: str, *, var: str = "DATABASE_URL") -> dict[str, object]:
    """Turn ``postgresql://user:pass@host:port/db?opts`` into a Django ``DATABASES`` entry.

    A Unix socket is given either as ``?host=/path`` or a percent-encoded host (``%2Fvar%2Frun``).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ConfigError(f"{var}={url!r}: scheme must be postgres:// or postgresql://, got {parts.scheme!r}")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ConfigError(f"{var}={url!r}: no database name in the path")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{var}={url!r}: the port is not a number between 0 and 65535") from None
    host = query.pop("host", None) or unquote(parts.hostname or "")
    options: dict[str, object] = dict(query)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
    }


def check_redis_url(url: str, *, var: str = "REDIS_URL") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{var}={url!r}: scheme must be redis://, rediss:// or unix://, got {parts.scheme!r}")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"{var}={url!r}: a unix:// URL needs a socket path")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(f"{var}={url!r}: the port is not a number between 0 and 65535") from None
    return url


def celery_broker_url(redis_url: str) -> str:
    """kombu spells a Unix-socket Redis ``redis+socket:///path``."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return f"redis+socket://{parts.path}" + (f"?{parts.query}" if parts.query else "")
    return redis_url
