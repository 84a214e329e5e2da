"""Adaptive throttling: slow a key down when its receiver pushes back, speed it up again
when the pushback stops, and settle near the rate the receiver really accepts.

A throttle (a 421/4xx "too many messages", a provider's 429) halves the key's effective rate,
but never below the *accepted* rate (the highest rate that once went a whole `quiet_s`
without a throttle) and never below `floor_per_s`. A throttle at or below the accepted rate
means the receiver got stricter: the rate halves and the accepted rate is forgotten down to
it. Throttles that arrive within `coalesce_s` of the previous halving count once: the
workers that met the same pushback at the same moment slow the key down once, not once each.
After each `quiet_s` without a throttle the rate grows additively by one small step,
`step_fraction` of the accepted rate (of the ceiling while none is known), back up to the
configured rate. So against a receiver that takes 3/min the rate climbs in small steps just
above what it takes, is sent back to the last rate that held, and stays near it.
The state of a key is one Redis hash, so `state`/`effective` cost one HGETALL; the keys with
a state are listed in one sorted set (`active`), so a pacer learns which receivers are held
back with one call.
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
                 step_fraction: float = 0.25, floor_per_s: float = 1 / 60,
                 coalesce_s: float = 1.0) -> None:
        if quiet_s <= 0 or step_fraction <= 0:
            raise InputError("adaptive throttling needs quiet_s > 0 and a recovery step "
                             "(step_fraction > 0)")
        if floor_per_s <= 0:
            raise InputError(f"floor_per_s must be more than zero (got {floor_per_s})")
        self.client, self.clock, self.prefix = client, clock, prefix
        self.quiet_s, self.step_fraction = quiet_s, step_fraction
        self.floor_per_s, self.coalesce_s = floor_per_s, coalesce_s
        self.active_key = prefix + "active"

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _step(self, fields: dict[str, str], configured: float) -> float:
        """The additive recovery step: a fraction of the accepted rate, else of the ceiling."""
        accepted = float(fields.get("accepted", 0))
        return max(self.floor_per_s, self.step_fraction * (accepted or configured))

    def _recovered(self, fields: dict[str, str], configured: float, quiet_s: float,
                   periods_back: int = 0) -> float:
        """The rate after `quiet_s` seconds without a throttle (minus `periods_back` quiet
        periods), starting at the rate set by the last throttle."""
        periods = max(0, int(quiet_s // self.quiet_s) - periods_back)
        rate = float(fields["rate"]) + periods * self._step(fields, configured)
        return min(rate, configured)

    def _state(self, fields: dict[str, str], configured_per_s: float, now: float) -> ThrottleState:
        if "rate" not in fields:
            return ThrottleState(configured_per_s, None, 0.0, None)
        at = float(fields["at"])
        per_s = self._recovered(fields, configured_per_s, now - at)
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
        """Record a pushback for `key`: halve its effective rate, not below the accepted
        rate (at most once per `coalesce_s`), remember `reason` and the `hint_s`
        retry-after. Returns the new rate."""
        if configured_per_s <= 0:
            raise InputError(f"configured_per_s must be more than zero (got {configured_per_s})")
        result: list[float] = []

        def update(pipe: Any) -> None:
            now = self.clock()
            fields = {_text(k): _text(v) for k, v in pipe.hgetall(self._key(key)).items()}
            ceiling = float(fields.get("ceiling", configured_per_s))
            values = self._lowered(fields, min(configured_per_s, ceiling), now)
            rate = float(values["rate"])
            retry_until = max(now + (hint_s or 0.0), float(fields.get("retry_until", 0)))
            values |= {"reason": reason, "at": repr(now), "retry_until": repr(retry_until),
                       # what an unconfigured key recovers to (see `current`): the first one
                       "ceiling": fields.get("ceiling", repr(configured_per_s))}
            ttl = self._ttl_s(rate, configured_per_s, retry_until - now, values)
            pipe.multi()
            pipe.hset(self._key(key), mapping=values)
            pipe.expire(self._key(key), ttl)
            pipe.zadd(self.active_key, {key: now + ttl})
            pipe.zremrangebyscore(self.active_key, "-inf", now)
            result[:] = [rate]

        self.client.transaction(update, self._key(key))
        return result[0]

    def _lowered(self, fields: dict[str, str], configured: float, now: float) -> dict[str, str]:
        """The new `rate`, `accepted` and `halved_at` fields after a throttle at `now`."""
        if "rate" not in fields:
            return {"rate": repr(max(self.floor_per_s, configured / 2)), "accepted": "0",
                    "halved_at": repr(now)}
        current = self._recovered(fields, configured, now - float(fields["at"]))
        accepted = float(fields.get("accepted", 0))
        if now - float(fields.get("halved_at", "-inf")) < self.coalesce_s:
            # coalescing counts from the last halving, so steady pushback still halves
            # once per coalesce_s
            return {"rate": repr(current), "accepted": repr(accepted)}
        if now - float(fields["at"]) >= self.quiet_s:    # a rate held a whole quiet period
            held = self._recovered(fields, configured, now - float(fields["at"]), 1)
            accepted = max(accepted, held)
        if current > accepted:
            rate = max(self.floor_per_s, current / 2, accepted)
        else:   # pushed back at a rate that held before: the receiver got stricter
            rate = accepted = max(self.floor_per_s, current / 2)
        return {"rate": repr(rate), "accepted": repr(accepted), "halved_at": repr(now)}

    def _ttl_s(self, rate: float, configured: float, retry_s: float,
               fields: dict[str, str]) -> int:
        """Keep the state until the rate is back to configured and the hint has passed."""
        steps = max(0.0, configured - rate) / self._step(fields, configured)
        return math.ceil(max((math.ceil(steps) + 1) * self.quiet_s, retry_s) + self.quiet_s)

    def active(self) -> set[str]:
        """The keys that have a throttle state now (held back, or recovering): one call."""
        now = self.clock()
        members: list[Any] = self.client.zrangebyscore(self.active_key, now, "+inf")
        return {_text(m) for m in members}

    def reset(self, key: str) -> bool:
        """Back to the configured rate at once; True when `key` had a throttle state."""
        pipe = self.client.pipeline()
        pipe.delete(self._key(key))
        pipe.zrem(self.active_key, key)
        deleted, _ = pipe.execute()
        return bool(deleted)
