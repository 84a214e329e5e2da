"""The Celery app, configured from the project's settings (see campaigns.settings)."""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable

from celery import Celery, signals

from campaigns.context import Context, broker_url, open_context
from campaigns.errors import CampaignsError
from campaigns.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: how often the ledger upkeep runs (one worker at a time, under a Redis lock)
MAINTENANCE_EVERY_S = 2.0
#: how often parked messages are released (one worker at a time, under a Redis lock)
RELEASE_EVERY_S = 0.2
#: how often the queues are topped up from the ledger (one worker at a time)
FEED_EVERY_S = 0.2
#: how often due event callbacks are published (one worker at a time, under a Redis lock)
CALLBACKS_EVERY_S = 1.0
#: a worker looks at its config file's modification time at most this often (per task)
RELOAD_CHECK_S = 1.0
#: what a reload cannot change in a running worker: these need a restart
RESTART_ONLY = ("data_dir", "database_url", "redis_url", "queue")

settings = load_settings()
# Celery logs two INFO lines per task (received, succeeded): two lines per message at INFO,
# the worker's default. Kept off unless asked for (CAMPAIGNS_LOG_TASKS=1); failures still log.
if os.environ.get("CAMPAIGNS_LOG_TASKS") != "1":
    for _name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(_name).setLevel(logging.WARNING)
app = Celery("campaigns", include=["workers.tasks"])
app.conf.update(
    broker_url=broker_url(settings),
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": settings.sending.visibility_timeout_s,
                              # kombu takes a dead worker's unacked tasks back on a sweep every
                              # interval x throttle s (100 s by default, whatever the visibility
                              # timeout): every 1 s x N, N = half the timeout, 1 to 10
                              "unacked_restore_interval": 1,
                              "unacked_restore_throttle": max(1, min(10, int(
                                  settings.sending.visibility_timeout_s // 2))),
                              # BRPOP the queues in the order given: transactional first
                              "queue_order_strategy": "priority"},
    task_default_queue=settings.queue,
    task_acks_late=True,                 # a task is acked after it ran, not when received
    task_reject_on_worker_lost=True,     # a killed child's task goes back to the queue
    task_ignore_result=True,
    result_backend=None,
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=16,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    # `campaigns beat`: ask a worker to launch due scheduled runs every few seconds; a tick
    # that waited longer than a few intervals is dropped (the next one does its work)
    beat_schedule={"campaigns-tick": {
        "task": "campaigns.tick", "schedule": settings.schedules.tick_s,
        "options": {"queue": settings.control_queue,
                    "expires": max(10.0, 5 * settings.schedules.tick_s)}}},
)

_context: Context | None = None
_lock = threading.Lock()


def context() -> Context:
    """This process's settings + database (created after fork, once)."""
    global _context
    with _lock:
        if _context is None:
            # no ping per transaction: a task that meets a dropped connection is retried
            _context = open_context(settings, migrate=False, pre_ping=False)
            _context.group_commit = True    # `sent` answers written together, off the path
        return _context


def _file_stamp(settings: Settings) -> tuple[int, int] | None:
    try:
        stat = settings.config_path.stat() if settings.config_path else None
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size) if stat else None


_stamp = _file_stamp(settings)
_next_look = 0.0


def reload_settings(force: bool = False) -> bool:
    """Load the config file again when it changed (looked at once per RELOAD_CHECK_S, or now
    with `force`), into this process's context: relays, pools, rates, breaker, sending and
    bounce policies take effect; RESTART_ONLY keep their old values, with a warning. A file
    that does not load is logged and the old settings kept. True when the settings were
    replaced."""
    global _stamp, _next_look
    now = time.monotonic()
    if now < _next_look and not force:
        return False
    _next_look = now + RELOAD_CHECK_S
    stamp = _file_stamp(settings)
    if stamp == _stamp:
        return False
    _stamp = stamp
    old = context().settings
    try:
        new = load_settings()
    except CampaignsError as err:
        log.error("%s changed but was not reloaded (the old settings stay): %s",
                  settings.config_path, err)
        return False
    kept = {key: getattr(old, key) for key in RESTART_ONLY}
    changed = [key for key, value in kept.items() if getattr(new, key) != value]
    if changed:
        log.warning("%s: %s changed; restart the workers for that", settings.config_path,
                    ", ".join(changed))
    context().reconfigure(dataclasses.replace(new, **kept))
    log.info("%s reloaded", settings.config_path)
    return True


def _fleet_loop(stop: threading.Event, what: str, every_s: float, lock: str, lock_ms: int,
                work: Callable[[], None]) -> None:
    """Run `work` every `every_s` in one worker of the whole fleet at a time: the one that
    takes the Redis lock `lock` (held `lock_ms`). A failure (the database, Redis or a
    mailbox server is down) is logged and the loop goes on."""
    client = context().redis
    while not stop.wait(every_s):
        try:
            if client.set(lock, "1", nx=True, px=lock_ms):
                work()
        except Exception:
            log.exception("%s failed; trying again in %.1f s", what, every_s)


def _upkeep() -> None:
    from campaigns.lifecycle import maintenance
    from workers.dispatch import enqueue, pending
    done = maintenance(context().db, enqueue, context().settings, pending)
    if any(done.values()):
        log.info("ledger upkeep: %s", done)


def _feed() -> None:
    """Top up the broker's queues from the ledger (campaigns.lifecycle.feed)."""
    from campaigns.lifecycle import feed
    from workers.dispatch import enqueue, waiting
    feed(context().db, context().settings, enqueue, waiting)


def _release_parked() -> None:
    """Hand messages parked under a receiver group's or campaign's limit back to the
    queue at that limit's rate (campaigns.delivery.parking)."""
    from workers.dispatch import release
    pacer = context().pacer
    pacer.parking.release(pacer.rate_of, release)


def _poll_mailbox() -> None:
    from campaigns.intake import poll_mailbox
    result = poll_mailbox(context().db, context().settings)
    if result.handled or result.failed:
        log.info("bounce mailbox: %s handled, %s failed", result.handled, result.failed)


def _publish_callbacks() -> None:
    """Publish a task per due event of the callbacks' outbox, on the transactional queue (a
    bulk backlog does not delay them); each is hidden from the next sweeps until it ran."""
    from campaigns.callbacks import publish_due
    from workers.tasks import publish_callbacks
    ctx = context()
    publish_due(ctx.db, ctx.settings.callbacks, ctx.clock(), publish_callbacks)


_stop = threading.Event()


@signals.worker_ready.connect
def _start_maintenance(**_: Any) -> None:
    loops = [("ledger upkeep", MAINTENANCE_EVERY_S, "campaigns:maintenance",
              int(MAINTENANCE_EVERY_S * 900), _upkeep),
             ("releasing parked messages", RELEASE_EVERY_S, "campaigns:releaser",
              int(RELEASE_EVERY_S * 900), _release_parked),
             ("feeding the queue from the ledger", FEED_EVERY_S, "campaigns:feeder",
              int(FEED_EVERY_S * 900), _feed),
             ("publishing event callbacks", CALLBACKS_EVERY_S, "campaigns:callbacks",
              int(CALLBACKS_EVERY_S * 900), _publish_callbacks)]
    if settings.bounces.imap is not None:   # one poll per interval in the whole fleet
        every = settings.bounces.imap_every_s
        loops.append(("polling the bounce mailbox", min(every, 5.0), "campaigns:imap-poll",
                      int(every * 1000), _poll_mailbox))
    for what, every_s, lock, lock_ms, work in loops:
        threading.Thread(target=_fleet_loop, args=(_stop, what, every_s, lock, lock_ms, work),
                         name=lock.removeprefix("campaigns:"), daemon=True).start()


@signals.worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
    context().close_sender()


@signals.worker_process_shutdown.connect
def _process_shutdown(**_: Any) -> None:
    context().close_sender()
