"""The composition root: what a process needs, built once and handed to CLI commands,
Celery tasks and the workers' fleet loops: settings, the database, the Redis client, the
clock, the pacer (limits, throttles, parking), the relays' circuit breaker and the Sender.
Nothing else constructs these; a test moves time by the clock made here
(CAMPAIGNS_CLOCK_OFFSET_S, CAMPAIGNS_CLOCK_FILE), never by hooks in the tasks.

The parts are made on first use (a CLI command that needs only the database never imports
redis-py), and made again after `reconfigure` (a worker reloading its TOML file)."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from campaigns.db import Database
from campaigns.settings import Settings, load_settings

if TYPE_CHECKING:
    import redis

    from campaigns.delivery.pacing import Pacer
    from campaigns.delivery.pools import Breaker
    from campaigns.delivery.recording import GroupRecorder
    from campaigns.delivery.sending import Sender

Clock = Callable[[], float]


@dataclass
class Context:
    settings: Settings
    db: Database
    clock: Clock = time.time
    #: Redis socket timeout (seconds) for this process's client; None: no timeout (workers)
    redis_timeout_s: float | None = None
    _parts: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _senders: dict[int, Any] = field(default_factory=dict, repr=False)
    #: `sent` answers written in groups off the send path (workers; see delivery.recording)
    group_commit: bool = False

    @property
    def embedded_redis(self) -> bool:
        return self.settings.redis_url is None

    @property
    def broker_url(self) -> str:
        return broker_url(self.settings)

    @property
    def redis_url(self) -> str:
        return redis_url(self.settings)

    def _part(self, name: str, make: Callable[[], Any]) -> Any:
        with self._lock:
            part = self._parts.get(name)
            if part is None:
                part = self._parts[name] = make()
            return part

    @property
    def redis(self) -> "redis.Redis":
        """This process's Redis client (thread-safe: a connection pool)."""
        def make() -> Any:
            from redis import Redis
            return Redis.from_url(self.redis_url, socket_timeout=self.redis_timeout_s)
        return self._part("redis", make)  # type: ignore[no-any-return]

    def running_redis(self) -> "redis.Redis | None":
        """This process's client when Redis runs (the configured one, or the embedded one
        once started); None when the embedded server is not running: a look (`status`,
        `relays list`) never starts one."""
        if self.settings.redis_url is None:
            from campaigns import embedded_redis
            if not embedded_redis.is_running(self.settings.data_dir):
                return None
        return self.redis

    @property
    def pacer(self) -> "Pacer":
        def make() -> Any:
            from campaigns.delivery.pacing import Pacer
            return Pacer(self.settings, self.db, self.redis, clock=self.clock)
        return self._part("pacer", make)  # type: ignore[no-any-return]

    @property
    def breaker(self) -> "Breaker":
        def make() -> Any:
            from campaigns.delivery.pools import Breaker
            return Breaker(self.redis, self.settings.breaker)
        return self._part("breaker", make)  # type: ignore[no-any-return]

    @property
    def sender(self) -> "Sender":
        """The send path of the calling thread: one relay connection per relay name. A
        worker with several messages in flight (a thread each) has one Sender per thread,
        so each has its own SMTP connections; the pacer, breaker and database are shared."""
        me = threading.get_ident()
        sender = self._senders.get(me)
        if sender is not None and sender.settings is not self.settings:
            sender.close()      # reconfigured since: this thread's next message uses the new
            sender = None
        if sender is None:
            from campaigns.delivery.sending import Sender
            with self._lock:
                sender = self._senders[me] = Sender(self.settings, self.db, self.pacer,
                                                    self.breaker, self.recorder)
        return sender

    @property
    def relay_refused(self) -> bool:
        """Whether a sender of this process was refused by a relay since it was made (its
        settings may be out of date: a person is fixing them)."""
        return any(sender.relay_refused for sender in list(self._senders.values()))

    @property
    def recorder(self) -> "GroupRecorder | None":
        """This process's group commit of `sent` answers, when `group_commit`."""
        if not self.group_commit:
            return None
        def make() -> Any:
            from campaigns.delivery.recording import GroupRecorder
            return GroupRecorder(self.db)
        return self._part("recorder", make)  # type: ignore[no-any-return]

    def close_sender(self) -> None:
        """Close every thread's relay connections and write the answers still waiting."""
        with self._lock:
            senders, self._senders = list(self._senders.values()), {}
            recorder = self._parts.get("recorder")
        for sender in senders:
            sender.close()
        if recorder is not None:
            recorder.close()

    def reconfigure(self, settings: Settings) -> None:
        """New settings (a reloaded TOML file): the pacer, breaker and senders are made again
        from them at next use (a thread's sender when that thread takes its next message:
        another thread's send under way is not cut); the database and Redis stay."""
        with self._lock:
            self.settings = settings
            for name in ("pacer", "breaker"):
                self._parts.pop(name, None)


def clock_from_env(env: Mapping[str, str]) -> Clock:
    """The wall clock, shifted by CAMPAIGNS_CLOCK_OFFSET_S (tests of day boundaries), or by
    the number of seconds in the file CAMPAIGNS_CLOCK_FILE, re-read at each call (tests that
    move time forward while the processes run: a simulated week of schedules)."""
    path = env.get("CAMPAIGNS_CLOCK_FILE")
    if path:
        def moving() -> float:
            try:
                with open(path) as fh:
                    return time.time() + float(fh.read().strip() or 0)
            except (OSError, ValueError):
                return time.time()
        return moving
    offset = float(env.get("CAMPAIGNS_CLOCK_OFFSET_S", "0") or 0)
    return (lambda: time.time() + offset) if offset else time.time


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


def open_context(settings: Settings | None = None, *, migrate: bool = True,
                 redis_timeout_s: float | None = None, pre_ping: bool = True) -> Context:
    settings = settings or load_settings()
    return Context(settings=settings, db=Database(settings, auto_migrate=migrate,
                                                  pre_ping=pre_ping),
                   clock=clock_from_env(os.environ), redis_timeout_s=redis_timeout_s)
