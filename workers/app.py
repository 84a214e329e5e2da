"""The Celery app, configured from the project's settings (see campaigns.settings)."""
from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals

from campaigns.context import Context, broker_url, open_context, redis_url
from campaigns.settings import load_settings

log = logging.getLogger(__name__)

#: how often the ledger upkeep runs (one worker at a time, under a Redis lock)
MAINTENANCE_EVERY_S = 2.0
#: how often parked messages are released (one worker at a time, under a Redis lock)
RELEASE_EVERY_S = 0.2

settings = load_settings()
app = Celery("campaigns", include=["workers.tasks"])
app.conf.update(
    broker_url=broker_url(settings),
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": settings.sending.visibility_timeout_s,
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
            _context = open_context(settings, migrate=False)
        return _context


def _maintenance_loop(stop: threading.Event) -> None:
    import redis

    from campaigns.lifecycle import maintenance
    from workers.dispatch import enqueue

    client = redis.Redis.from_url(redis_url(settings))
    while not stop.wait(MAINTENANCE_EVERY_S):
        try:
            lock_ms = int(MAINTENANCE_EVERY_S * 1000 * 0.9)
            if client.set("campaigns:maintenance", "1", nx=True, px=lock_ms):
                done = maintenance(context().db, enqueue, settings)
                if any(done.values()):
                    log.info("ledger upkeep: %s", done)
        except Exception:  # keep the loop alive through a database or Redis hiccup
            log.exception("ledger upkeep failed; retrying in %.0f s", MAINTENANCE_EVERY_S)


def _release_loop(stop: threading.Event) -> None:
    """Hand messages parked under a receiver group's or campaign's limit back to the
    queue at that limit's rate (campaigns.parking)."""
    import redis

    from campaigns.pacing import Pacer
    from workers.dispatch import release

    client = redis.Redis.from_url(redis_url(settings))
    pacer = Pacer(settings, context().db, client)
    while not stop.wait(RELEASE_EVERY_S):
        try:
            if client.set("campaigns:releaser", "1", nx=True, px=int(RELEASE_EVERY_S * 900)):
                pacer.parking.release(pacer.rate_of, release)
        except Exception:
            log.exception("releasing parked messages failed; retrying")


def _imap_loop(stop: threading.Event) -> None:
    """Poll the [bounces.imap] mailbox every `imap_every_s`, one worker per interval."""
    import redis

    from campaigns.intake import poll_mailbox

    every = settings.bounces.imap_every_s
    client = redis.Redis.from_url(redis_url(settings))
    while not stop.wait(min(every, 5.0)):
        try:
            if client.set("campaigns:imap-poll", "1", nx=True, px=int(every * 1000)):
                result = poll_mailbox(context().db, settings)
                if result.handled or result.failed:
                    log.info("bounce mailbox: %s handled, %s failed", result.handled, result.failed)
        except Exception:  # the mailbox server is down: say so, try at the next interval
            log.exception("polling the bounce mailbox failed")


_stop = threading.Event()


@signals.worker_ready.connect
def _start_maintenance(**_: Any) -> None:
    threading.Thread(target=_maintenance_loop, args=(_stop,), name="ledger-upkeep",
                     daemon=True).start()
    threading.Thread(target=_release_loop, args=(_stop,), name="parked-release",
                     daemon=True).start()
    if settings.bounces.imap is not None:
        threading.Thread(target=_imap_loop, args=(_stop,), name="bounce-mailbox",
                         daemon=True).start()


@signals.worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
    from workers.tasks import close_sender
    close_sender()


@signals.worker_process_shutdown.connect
def _process_shutdown(**_: Any) -> None:
    from workers.tasks import close_sender
    close_sender()
