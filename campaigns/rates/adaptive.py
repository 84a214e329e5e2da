"""Adaptive throttling: slow a key down when its receiver pushes back, speed it up again
when the pushback stops.

A throttle (a 421/4xx "too many messages", a provider's 429) halves the key's effective rate,
never below `floor_per_s`. Throttles that arrive within `coalesce_s` of the previous one count
once: the workers that met the same pushback at the same moment slow the key down once, not
once each. After each `quiet_s` without a throttle the rate grows by one step (× `factor` or
+ `step_fraction` of the configured rate, whichever is more) back up to the configured rate.
The state of a key is one Redis hash, so `state`/`effective` cost one HGETALL.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import redis

from campaigns.errors import InputError


@dataclass(frozen=True, slots=True)
class ThrottleState:
    per_s: float               # the rate to use now
    reason: str | None         # why it is below the configured rate; None at full rate
    retry_after_s: float       # the receiver's retry-after hint still pending, 0 when none
    throttled_at: float | None # epoch seconds of the last throttle, None when never


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AdaptiveThrottle:
    """Per-key effective rates shared through Redis. `clock` gives epoch seconds."""

    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] = time.time,
                 prefix: str = "campaigns:adaptive:", quiet_s: float = 60.0,
                 factor: float = 1.5, step_fraction: float = 0.25,
                 floor_per_s: float = 1 / 60, coalesce_s: float = 1.0) -> None:
        if quiet_s <= 0 or factor < 1 or step_fraction < 0 or (factor == 1 and step_fraction == 0):
            raise InputError("adaptive throttling needs quiet_s > 0 and a recovery step "
                             "(factor > 1 or step_fraction > 0)")
        if floor_per_s <= 0:
            raise InputError(f"floor_per_s must be more than zero (got {floor_per_s})")
        self.client, self.clock, self.prefix = client, clock, prefix
        self.quiet_s, self.factor, self.step_fraction = quiet_s, factor, step_fraction
        self.floor_per_s, self.coalesce_s = floor_per_s, coalesce_s

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _recovered(self, rate: float, configured: float, quiet_s: float) -> float:
        """The rate after `quiet_s` seconds without a throttle, starting at `rate`."""
        for _ in range(int(quiet_s // self.quiet_s)):
            if rate >= configured:
                break
            rate = max(rate * self.factor, rate + configured * self.step_fraction)
        return min(rate, configured)

    def _state(self, fields: dict[str, str], configured_per_s: float, now: float) -> ThrottleState:
        if "rate" not in fields:
            return ThrottleState(configured_per_s, None, 0.0, None)
        at = float(fields["at"])
        per_s = self._recovered(float(fields["rate"]), configured_per_s, now - at)
        retry = max(0.0, float(fields.get("retry_until", 0)) - now)
        reason = fields.get("reason") if per_s < configured_per_s or retry > 0 else None
        return ThrottleState(per_s, reason, retry, at)

    def _read(self, key: str) -> dict[str, str]:
        raw: dict[Any, Any] = self.client.hgetall(self._key(key))
        return {_text(k): _text(v) for k, v in raw.items()}

    def state(self, key: str, configured_per_s: float) -> ThrottleState:
        """Everything about `key` in one round trip."""
        return self._state(self._read(key), configured_per_s, self.clock())

    def effective(self, key: str, configured_per_s: float) -> tuple[float, str | None]:
        """(rate to use now, reason it is lower than configured or None)."""
        state = self.state(key, configured_per_s)
        return state.per_s, state.reason

    def current(self, key: str,
                configured_per_s: float | None) -> tuple[float | None, str | None]:
        """Like `effective`, also for a key with no configured rate: its ceiling is then the
        rate it was first halved from (recorded by `throttle`), and it reads (None, None)
        once it has recovered to it, or was never throttled. One round trip."""
        fields = self._read(key)
        if "rate" not in fields:
            return configured_per_s, None
        ceiling = (configured_per_s if configured_per_s is not None
                   else float(fields.get("ceiling", fields["rate"])))
        state = self._state(fields, ceiling, self.clock())
        if configured_per_s is None and state.reason is None:
            return None, None
        return state.per_s, state.reason

    def retry_after(self, key: str) -> float:
        """Seconds left of the last retry-after hint, 0 when none is pending."""
        until = self.client.hget(self._key(key), "retry_until")
        return max(0.0, float(_text(until)) - self.clock()) if until is not None else 0.0

    def throttle(self, key: str, configured_per_s: float, hint_s: float | None,
                 reason: str) -> float:
        """Record a pushback for `key`: halve its effective rate (at most once per
        `coalesce_s`), remember `reason` and the `hint_s` retry-after. Returns the new rate."""
        if configured_per_s <= 0:
            raise InputError(f"configured_per_s must be more than zero (got {configured_per_s})")
        result: list[float] = []

        def update(pipe: Any) -> None:
            now = self.clock()
            fields = {_text(k): _text(v) for k, v in pipe.hgetall(self._key(key)).items()}
            current = self._state(fields, configured_per_s, now)
            # Coalescing counts from the last halving, so a steady stream of pushback
            # still halves once per coalesce_s.
            recent = now - float(fields.get("halved_at", "-inf")) < self.coalesce_s
            rate = current.per_s if recent else max(self.floor_per_s, current.per_s / 2)
            retry_until = max(now + (hint_s or 0.0), float(fields.get("retry_until", 0)))
            values = {"rate": repr(rate), "reason": reason, "at": repr(now),
                      "retry_until": repr(retry_until),
                      # what an unconfigured key recovers to (see `current`): the first one
                      "ceiling": fields.get("ceiling", repr(configured_per_s))}
            if not recent:
                values["halved_at"] = repr(now)
            pipe.multi()
            pipe.hset(self._key(key), mapping=values)
            pipe.expire(self._key(key), self._ttl_s(rate, configured_per_s, retry_until - now))
            result[:] = [rate]

        self.client.transaction(update, self._key(key))
        return result[0]

    def _ttl_s(self, rate: float, configured: float, retry_s: float) -> int:
        """Keep the state until the rate is back to configured and the hint has passed."""
        steps = 0
        while rate < configured and steps < 10_000:
            rate = max(rate * self.factor, rate + configured * self.step_fraction)
            steps += 1
        return math.ceil(max((steps + 1) * self.quiet_s, retry_s) + self.quiet_s)

    def reset(self, key: str) -> None:
        """Back to the configured rate at once."""
        self.client.delete(self._key(key))
