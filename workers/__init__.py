"""The thin Celery layer: the app, the send task and the CLI entry point.

`celery -A workers worker` finds the app through the lazy attribute below, so importing
`workers` (the CLI does) builds no Celery app and starts no Redis until one is needed."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from workers.app import app
        return app
    raise AttributeError(name)
