"""Celery tasks pass ids and call into the domain; nothing else lives here."""
from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any, Callable

from sqlalchemy.exc import OperationalError

from campaigns.sending import Sender
from workers.app import app, context, reload_settings

_sender: Sender | None = None
log = logging.getLogger(__name__)


def sender() -> Sender:
    """This process's Sender; made again (new relays, limits, breaker) when the config file
    changed, so a fixed relay password is used by the next message without a restart."""
    global _sender
    if reload_settings():
        close_sender()
    if _sender is None:
        from campaigns.pacing import Pacer
        from campaigns.pools import Breaker
        ctx = context()
        client = _redis()
        _sender = Sender(ctx.settings, ctx.db, Pacer(ctx.settings, ctx.db, client, clock=_clock()),
                         Breaker(client, ctx.settings.breaker))
    return _sender


@functools.cache
def _redis() -> Any:
    import redis

    from campaigns.context import redis_url
    return redis.Redis.from_url(redis_url(context().settings))


def _clock() -> Callable[[], float]:
    """The wall clock, shifted by CAMPAIGNS_CLOCK_OFFSET_S (tests of day boundaries), or by
    the number of seconds in the file CAMPAIGNS_CLOCK_FILE, re-read at each call (tests that
    move time forward while the processes run: a simulated week of schedules)."""
    path = os.environ.get("CAMPAIGNS_CLOCK_FILE")
    if path:
        def moving() -> float:
            try:
                with open(path) as fh:
                    return time.time() + float(fh.read().strip() or 0)
            except (OSError, ValueError):
                return time.time()
        return moving
    offset = float(os.environ.get("CAMPAIGNS_CLOCK_OFFSET_S", "0") or 0)
    return (lambda: time.time() + offset) if offset else time.time


def close_sender() -> None:
    global _sender
    if _sender is not None:
        _sender.close()
        _sender = None


@app.task(name="campaigns.send", autoretry_for=(OperationalError,), retry_backoff=True,
          retry_backoff_max=60, max_retries=20)
def send_delivery(delivery_id: int, hops: int = 0) -> str:
    """Send one ledger row. A row that is not claimable (already sent, paused campaign,
    retry not yet due) makes this a no-op, so redelivered tasks never send twice."""
    _took_a_task()
    try:
        outcome = sender().deliver(delivery_id, hops)
    except Exception:
        at_id, where = _sender.sending if _sender is not None else (0, "")
        log.exception("send task failed: %s", where if at_id == delivery_id
                      else f"delivery {delivery_id}")
        raise
    if outcome.retry_in_s is not None:
        from workers.dispatch import queue_for
        send_delivery.apply_async((delivery_id,), {"hops": outcome.hops},
                                  countdown=outcome.retry_in_s,
                                  queue=queue_for(outcome.priority, retry=True))
    return outcome.status


_recorded_at = float("-inf")


def _took_a_task() -> None:
    """Tell `campaigns status` a worker is taking tasks (one Redis SET a second at most)."""
    global _recorded_at
    now = time.monotonic()
    if now - _recorded_at >= 1.0:
        from campaigns.planning import record_task
        record_task(_redis())
        _recorded_at = now


@functools.cache
def _tick_parts() -> tuple[Callable[[], float], Any]:
    """This process's clock and Redis client for the scheduler's ticks (made once)."""
    import redis

    from campaigns.context import redis_url
    return _clock(), redis.Redis.from_url(redis_url(context().settings))


@app.task(name="campaigns.tick", ignore_result=True)
def scheduler_tick() -> str:
    """Launch due scheduled and recurring runs (beat sends this every `tick_s`). The lock
    only saves duplicate work; exactly-once comes from the database (campaigns.scheduling)."""
    import uuid
    from datetime import datetime, timezone

    from campaigns import scheduling
    from workers.dispatch import enqueue
    _took_a_task()
    clock, client = _tick_parts()
    ctx = context()
    token = uuid.uuid4().hex
    if not client.set("campaigns:scheduler", token, nx=True, px=60_000):
        return "busy"
    try:
        now = datetime.fromtimestamp(clock(), timezone.utc)
        report = scheduling.tick(ctx.db, ctx.settings, enqueue, now=now)
    finally:
        if client.get("campaigns:scheduler") == token.encode():
            client.delete("campaigns:scheduler")
    return f"launched {len(report.launched)}, skipped {len(report.skipped)}, failed {len(report.failed)}"
