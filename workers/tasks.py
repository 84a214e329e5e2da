"""Celery tasks pass ids and call into the domain; nothing else lives here."""
from __future__ import annotations

import os
import time
from typing import Callable

from sqlalchemy.exc import OperationalError

from campaigns.sending import Sender
from workers.app import app, context

_sender: Sender | None = None


def sender() -> Sender:
    global _sender
    if _sender is None:
        import redis

        from campaigns.context import redis_url
        from campaigns.pacing import Pacer
        ctx = context()
        client = redis.Redis.from_url(redis_url(ctx.settings))
        _sender = Sender(ctx.settings, ctx.db, Pacer(ctx.settings, ctx.db, client, clock=_clock()))
    return _sender


def _clock() -> Callable[[], float]:
    """The wall clock, shifted by CAMPAIGNS_CLOCK_OFFSET_S (tests of day boundaries)."""
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
    outcome = sender().deliver(delivery_id, hops)
    if outcome.retry_in_s is not None:
        from workers.dispatch import queue_for
        send_delivery.apply_async((delivery_id,), {"hops": outcome.hops},
                                  countdown=outcome.retry_in_s,
                                  queue=queue_for(outcome.priority, retry=True))
    return outcome.status
