"""Celery tasks pass ids and call into the domain; nothing else lives here."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Iterable

import httpx
from sqlalchemy.exc import OperationalError

if TYPE_CHECKING:
    from campaigns.delivery.sending import Outcome, Sender
from workers.app import app, context, reload_settings

log = logging.getLogger(__name__)


def sender() -> Sender:
    """This process's Sender (campaigns.context); made again (new relays, limits, breaker)
    when the config file changed, so a fixed relay password is used by the next message
    without a restart. After a relay refused us (a wrong password), the file is looked at
    before the next message whatever the time since the last look: the campaign was paused
    for a person to fix it, and the resume may come within a second."""
    ctx = context()
    reload_settings(force=ctx.relay_refused)
    return ctx.sender


@app.task(name="campaigns.send", autoretry_for=(OperationalError,), retry_backoff=True,
          retry_backoff_max=60, max_retries=20)
def send_delivery(delivery_id: int, hops: int = 0) -> str:
    """Send one ledger row. A row that is not claimable (already sent, paused campaign,
    retry not yet due) makes this a no-op, so redelivered tasks never send twice."""
    _took_a_task()
    try:
        outcome = sender().deliver(delivery_id, hops)
    except Exception:
        log.exception("send task failed: %s", _where(delivery_id))
        raise
    _again_later(delivery_id, outcome)
    return outcome.status


def _where(delivery_id: int) -> str:
    """The send under way, for a log line: campaign, delivery and the recipient's domain."""
    at_id, where = context().sender.sending
    return where if at_id == delivery_id else f"delivery {delivery_id}"


def _again_later(delivery_id: int, outcome: Outcome) -> None:
    """A row whose outcome asks for a retry (a deferral, a token not yet free) gets its own
    `campaigns.send` task with the countdown, on its priority's retry queue."""
    if outcome.retry_in_s is not None:
        from workers.dispatch import queue_for
        send_delivery.apply_async((delivery_id,), {"hops": outcome.hops},
                                  countdown=outcome.retry_in_s,
                                  queue=queue_for(outcome.priority, retry=True))


@app.task(name="campaigns.send_many", autoretry_for=(OperationalError,), retry_backoff=True,
          retry_backoff_max=60, max_retries=20)
def send_many(delivery_ids: list[int]) -> str:
    """Send several ledger rows, one after the other (the feeder's batches: one task's
    broker round trips and bookkeeping for [sending] task_batch messages). Each row is
    claimed on its own, so a redelivered or retried task skips the rows already done; a
    row that needs a retry gets its own `campaigns.send` task with the countdown."""
    _took_a_task()
    done: dict[str, int] = {}
    for delivery_id in delivery_ids:
        try:
            outcome = sender().deliver(delivery_id)
        except OperationalError:
            raise                   # the database is away: the whole task is retried
        except Exception:
            log.exception("send failed: %s", _where(delivery_id))
            continue                # the others still go; the upkeep finds this one
        _again_later(delivery_id, outcome)
        done[outcome.status] = done.get(outcome.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(done.items()))


_recorded_at = float("-inf")


def _took_a_task() -> None:
    """Tell `campaigns status` a worker is taking tasks (one Redis SET a second at most)."""
    global _recorded_at
    now = time.monotonic()
    if now - _recorded_at >= 1.0:
        from campaigns.delivery.planning import record_task
        record_task(context().redis)
        _recorded_at = now


@app.task(name="campaigns.tick", ignore_result=True)
def scheduler_tick() -> str:
    """Launch due scheduled and recurring runs (beat sends this every `tick_s`). The lock
    only saves duplicate work; exactly-once comes from the database (campaigns.scheduling)."""
    import uuid
    from datetime import datetime, timezone

    from campaigns import scheduling
    from workers.dispatch import enqueue
    _took_a_task()
    ctx = context()
    clock, client = ctx.clock, ctx.redis
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


_http: httpx.Client | None = None


@app.task(name="campaigns.callback", ignore_result=True)
def deliver_callback(event_id: int) -> str:
    """POST one event of the outbox (campaigns.callbacks): sent, retry (its next time in the
    ledger, published again by the fleet's sweep), failed (given up) or skipped. A
    redelivered task finds it sent and does nothing."""
    from campaigns import callbacks
    global _http
    _took_a_task()
    reload_settings()
    ctx = context()
    if _http is None:
        _http = httpx.Client(follow_redirects=False)
    outcome = callbacks.deliver(ctx.db, ctx.settings.callbacks, event_id, ctx.clock(), _http)
    if outcome.error:
        log.info("callback of event %s: %s (%s)", event_id, outcome.status, outcome.error)
    return outcome.status


def publish_callbacks(ids: Iterable[int]) -> None:
    """One `campaigns.callback` task per event id, on the transactional queue."""
    from workers.dispatch import BATCH, queue_for
    queue = queue_for("transactional")
    with app.producer_or_acquire() as producer, producer.batch(BATCH):
        for event_id in ids:
            deliver_callback.apply_async((event_id,), producer=producer, queue=queue)
