"""Publishing send tasks in batches over one producer connection."""
from __future__ import annotations

from typing import Sequence

from workers.app import app
from workers.tasks import send_delivery


def enqueue(ids: Sequence[int], countdown: float | None = None) -> None:
    with app.producer_or_acquire() as producer:
        for delivery_id in ids:
            send_delivery.apply_async((delivery_id,), countdown=countdown, producer=producer)
