"""IP / domain warm-up: a daily cap that grows by a factor each day up to a ceiling."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from campaigns.errors import InputError


@dataclass(frozen=True, slots=True)
class WarmupPlan:
    """`start` messages on `start_date`, multiplied by `factor` each following day, never
    above `max_cap` (None: no ceiling; a ceiling below `start` simply caps every day)."""
    start: int
    factor: float
    start_date: date
    max_cap: int | None = None

    def __post_init__(self) -> None:
        if self.start < 1:
            raise InputError(f"warm-up start must be at least 1 message a day (got {self.start})")
        if not (1.0 <= self.factor < math.inf):
            raise InputError(f"warm-up factor must be 1 or more, e.g. 1.5 (got {self.factor})")
        if self.max_cap is not None and self.max_cap < 1:
            raise InputError(f"warm-up max_cap must be at least 1 (got {self.max_cap})")

    def cap_on(self, day: date) -> int:
        """The cap for calendar day `day`: start × factor^days since start_date, rounded
        down, at most max_cap; `start` (at most max_cap) on and before start_date."""
        days = (day - self.start_date).days
        if days <= 0:
            return self.start if self.max_cap is None else min(self.start, self.max_cap)
        try:
            # The tiny relative slack keeps 100 × 1.1² (121.00000000000003 or 120.99999…) at 121.
            cap = self.start * self.factor ** days * (1 + 1e-12)
        except OverflowError:
            cap = math.inf
        if self.max_cap is not None and cap >= self.max_cap:
            return self.max_cap
        return math.floor(cap) if cap < 2 ** 62 else 2 ** 62
