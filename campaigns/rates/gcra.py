"""GCRA (generic cell rate algorithm) with burst, apart from any storage.

The state of one limit is a single number, the theoretical arrival time (`tat`): the
moment the limit would be back to "empty" if every past message had been sent exactly at
the configured rate. A request for `cost` messages at `now` is allowed when it fits in the
burst, i.e. when `max(tat, now) + cost * interval - burst * interval <= now`.

`campaigns/rates/_lua.py` runs the same arithmetic inside Redis; `GcraBucket` keeps the state
in memory for one process (tests, a single worker without Redis).
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

from campaigns.errors import InputError

# Float slack so that a request landing exactly on its slot is allowed despite rounding
# (0.02 + 0.02 + 0.02 != 0.06 in binary floating point). Seconds.
EPSILON_S = 1e-9


class GcraResult(NamedTuple):
    allowed: bool
    new_tat: float   # the state to store when allowed; the unchanged state when denied
    wait_s: float    # 0 when allowed; else seconds until the same request would be allowed


def gcra(tat: float | None, now: float, emission_interval: float, burst: int,
         cost: int = 1) -> GcraResult:
    """One GCRA decision.

    tat: stored theoretical arrival time (None: no state yet). now: current time, seconds.
    emission_interval: seconds per message (1 / rate). burst: messages that may go at once
    after an idle period (>= 1). cost: messages requested (1 <= cost <= burst).
    """
    if emission_interval <= 0 or burst < 1 or cost < 1 or cost > burst:
        raise InputError(f"GCRA needs emission_interval > 0 and 1 <= cost <= burst "
                         f"(got interval {emission_interval}, burst {burst}, cost {cost})")
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * emission_interval
    allow_at = new_tat - burst * emission_interval
    if allow_at - now > EPSILON_S:
        return GcraResult(False, now if tat is None else tat, allow_at - now)
    return GcraResult(True, new_tat, 0.0)


class GcraBucket:
    """One limit held in memory for one process, with an injectable clock."""

    def __init__(self, rate_per_s: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0:
            raise InputError(f"rate must be more than zero (got {rate_per_s})")
        self.emission_interval = 1.0 / rate_per_s
        self.burst = burst
        self._clock = clock
        self._tat: float | None = None

    def acquire(self, cost: int = 1) -> GcraResult:
        """Take `cost` messages if the limit allows them now."""
        result = gcra(self._tat, self._clock(), self.emission_interval, self.burst, cost)
        if result.allowed:
            self._tat = result.new_tat
        return result
