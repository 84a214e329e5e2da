"""What every process needs once: settings, the database and where Redis is."""
from __future__ import annotations

from dataclasses import dataclass

from campaigns.db import Database
from campaigns.settings import Settings, load_settings


@dataclass
class Context:
    settings: Settings
    db: Database

    @property
    def embedded_redis(self) -> bool:
        return self.settings.redis_url is None

    @property
    def broker_url(self) -> str:
        return broker_url(self.settings)

    @property
    def redis_url(self) -> str:
        return redis_url(self.settings)


def broker_url(settings: Settings) -> str:
    """URL in kombu's spelling (redis+socket:// for the embedded server, started on demand)."""
    from campaigns import embedded_redis   # redis-py: only for commands that use Redis
    if settings.redis_url:
        return settings.redis_url
    embedded_redis.ensure_running(settings.data_dir)
    return embedded_redis.broker_url(settings.data_dir)


def redis_url(settings: Settings) -> str:
    """URL in redis-py's spelling (unix:// for the embedded server, started on demand)."""
    from campaigns import embedded_redis   # redis-py: only for commands that use Redis
    if settings.redis_url:
        return settings.redis_url
    embedded_redis.ensure_running(settings.data_dir)
    return embedded_redis.client_url(settings.data_dir)


def open_context(settings: Settings | None = None, *, migrate: bool = True) -> Context:
    settings = settings or load_settings()
    return Context(settings=settings, db=Database(settings, auto_migrate=migrate))
