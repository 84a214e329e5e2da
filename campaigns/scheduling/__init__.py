"""Scheduled and recurring runs: cron expressions and zones (`cron`), one-off and
recurring schedules and the tick that launches them exactly once (`schedules`).

`campaigns.scheduling.tick`, `schedule_once`, … are `campaigns.scheduling.schedules`'s,
loaded on first use.

May import: lifecycle, ledger, settings. Never delivery or Celery."""
from __future__ import annotations

from importlib import import_module
from typing import Any


def __getattr__(name: str) -> Any:
    module = import_module("campaigns.scheduling.schedules")   # not `from … import`: that asks __getattr__
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'campaigns.scheduling' has no attribute {name!r}") from None
