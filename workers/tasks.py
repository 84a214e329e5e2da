"""Celery tasks pass ids and call into the domain; nothing else lives here."""
from __future__ import annotations

from sqlalchemy.exc import OperationalError

from campaigns.sending import Sender
from workers.app import app, context

_sender: Sender | None = None


def sender() -> Sender:
    global _sender
    if _sender is None:
        ctx = context()
        _sender = Sender(ctx.settings, ctx.db)
    return _sender


def close_sender() -> None:
    global _sender
    if _sender is not None:
        _sender.close()
        _sender = None


@app.task(name="campaigns.send", autoretry_for=(OperationalError,), retry_backoff=True,
          retry_backoff_max=60, max_retries=20)
def send_delivery(delivery_id: int) -> str:
    """Send one ledger row. A row that is not claimable (already sent, paused campaign,
    retry not yet due) makes this a no-op, so redelivered tasks never send twice."""
    outcome = sender().deliver(delivery_id)
    if outcome.retry_in_s is not None:
        send_delivery.apply_async((delivery_id,), countdown=outcome.retry_in_s)
    return outcome.status
