"""Fleet-wide send limits in Redis: one atomic `acquire` over several limits at once.

A send usually passes three limits (its relay, the recipient's domain group, its
campaign). `acquire` checks them all in one EVALSHA and either takes from every one of them
or from none, so a message blocked by its domain never spends a token of its relay. The
arithmetic of the rate part is `campaigns.rates.gcra`; the script is `campaigns.rates._lua`.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis

from campaigns.errors import InputError
from campaigns.rates._lua import ACQUIRE, OBSERVE, OBSERVED_SLOTS, ROLLING_MINUTES


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit a send must pass.

    key: what is limited ("relay:main", "domain:google", "campaign:NAME").
    rate_per_s: messages per second, None for no rate limit (only the daily cap).
    burst: messages that may go at once after a pause (>= 1).
    daily_cap: messages per day, None for no cap.
    day: the cap's calendar-day bucket ("2026-11-27", see `calendar_day`), None for a
        rolling 24 h window.
    day_ends_at: epoch seconds when `day` ends; lets a capped acquire say how long to
        wait. Without it a capped acquire asks to look again within the hour.
    """
    key: str
    rate_per_s: float | None
    burst: int = 1
    daily_cap: int | None = None
    day: str | None = None
    day_ends_at: float | None = None

    def __post_init__(self) -> None:
        if not self.key:
            raise InputError("a limit needs a key such as 'relay:main'")
        if self.rate_per_s is not None and not (0 < self.rate_per_s < math.inf):
            raise InputError(f"limit {self.key}: rate_per_s must be a positive number "
                             f"(got {self.rate_per_s})")
        if self.burst < 1:
            raise InputError(f"limit {self.key}: burst must be at least 1 (got {self.burst})")
        if self.day is not None and (not self.day or ":" in self.day):
            raise InputError(f"limit {self.key}: day must be a non-empty id without ':' "
                             f"such as '2026-11-27' (got {self.day!r})")
        if self.daily_cap is not None and self.daily_cap < 1:
            raise InputError(f"limit {self.key}: daily_cap must be at least 1 "
                             f"(got {self.daily_cap})")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    wait_s: float          # 0 when allowed; else how long until every limit would allow
    binding: str | None    # the limit that made us wait: "relay:main" or "relay:main:daily"


ALLOWED = Decision(True, 0.0, None)
#: counts of observed-only keys reach Redis at most this late (RedisLimiter.observe)
FLUSH_S = 0.5


def calendar_day(tz: str | ZoneInfo, now: float) -> tuple[str, float]:
    """The calendar day of `now` (epoch seconds) in time zone `tz`, as ("YYYY-MM-DD",
    epoch seconds of the next local midnight): the `day` and `day_ends_at` of a Limit."""
    try:
        zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InputError(f"unknown time zone {tz!r}: expected an IANA name such as "
                         f"Europe/Rome or UTC") from err
    local = datetime.fromtimestamp(now, zone)
    next_midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(),
                                     tzinfo=zone)
    return local.date().isoformat(), next_midnight.timestamp()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLimiter:
    """Rate limits and daily caps shared by every worker through one Redis.

    Time is the Redis server's clock (TIME inside the script), so workers on hosts with
    skewed clocks agree; `clock` (epoch seconds) replaces it in tests."""

    def __init__(self, client: redis.Redis, *, prefix: str = "campaigns:rl:",
                 clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self._script = client.register_script(ACQUIRE)
        self._observe = client.register_script(OBSERVE)
        self._observed: dict[str, int] = {}      # key -> messages not yet flushed
        self._observed_lock = threading.Lock()
        self._flushed_at = time.monotonic()
        self._flusher: threading.Thread | None = None

    # -- keys -------------------------------------------------------------------------------
    def _rate_key(self, key: str) -> str:
        return f"{self.prefix}tat:{key}"

    def _cap_key(self, limit: Limit) -> str:
        if limit.day is None:
            return f"{self.prefix}roll:{limit.key}"
        return f"{self.prefix}day:{limit.key}:{limit.day}"

    def _observed_key(self, key: str) -> str:
        return f"{self.prefix}obs:{key}"

    # -- the one call ---------------------------------------------------------------------
    def acquire(self, limits: Sequence[Limit], cost: int = 1) -> Decision:
        """Take `cost` messages from every limit, or from none.

        Allowed: every rate limit and daily cap had room; all were charged. Denied:
        nothing was charged; `wait_s` is the longest wait among the limits that refused
        and `binding` names that limit. Raises InputError when a limit can never allow
        `cost` (cost above its burst or daily cap) or two limits share a key."""
        if not limits:
            return ALLOWED
        keys, args = self._script_arguments(limits, cost)
        reply = self._script(keys=keys, args=args)
        if reply == 1:
            return ALLOWED
        wait, index, kind = _text(reply).split(" ")
        binding = limits[int(index) - 1].key + (":daily" if kind == "daily" else "")
        return Decision(False, float(wait), binding)

    def _script_arguments(self, limits: Sequence[Limit], cost: int) -> tuple[list[str], list[Any]]:
        if cost < 1:
            raise InputError(f"cost must be at least 1 (got {cost})")
        if len({limit.key for limit in limits}) != len(limits):
            raise InputError("two limits with the same key in one acquire: "
                             + ", ".join(limit.key for limit in limits))
        now = "" if self.clock is None else f"{self.clock():.6f}"
        keys: list[str] = []
        args: list[Any] = [now, cost]
        for limit in limits:
            if limit.rate_per_s is not None and cost > limit.burst:
                raise InputError(f"limit {limit.key}: cost {cost} is above its burst "
                                 f"{limit.burst} and could never be allowed")
            if limit.daily_cap is not None and cost > limit.daily_cap:
                raise InputError(f"limit {limit.key}: cost {cost} is above its daily cap "
                                 f"{limit.daily_cap} and could never be allowed")
            keys += [self._rate_key(limit.key), self._cap_key(limit), self._observed_key(limit.key)]
            interval = repr(1.0 / limit.rate_per_s) if limit.rate_per_s is not None else "0"
            mode = "-" if limit.daily_cap is None else ("r" if limit.day is None else "c")
            day_end = f"{limit.day_ends_at:.6f}" if limit.day_ends_at is not None else "0"
            args.append(f"{interval} {limit.burst} {limit.daily_cap or 0} {mode} {day_end}")
        return keys, args

    def observe(self, keys: Sequence[str], cost: int = 1) -> None:
        """Count `cost` messages against `keys` that have no rate or cap to check (only
        their observed rate is kept): counted here and added to Redis in one call at most
        every FLUSH_S, instead of a round trip per message."""
        with self._observed_lock:
            for key in keys:
                self._observed[key] = self._observed.get(key, 0) + cost
            due = time.monotonic() - self._flushed_at >= FLUSH_S
            if self._flusher is None:     # counts of a last burst reach Redis too
                self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                                 name="observed-rate-flush")
                self._flusher.start()
        if due:
            self.flush_observed()

    def _flush_loop(self) -> None:
        while True:
            time.sleep(FLUSH_S)
            try:
                self.flush_observed()
            except redis.RedisError:
                pass        # kept for the next flush (see flush_observed)

    def flush_observed(self) -> None:
        """Add the counts taken by `observe` to Redis now."""
        with self._observed_lock:
            pending, self._observed = self._observed, {}
            self._flushed_at = time.monotonic()
        if not pending:
            return
        now = "" if self.clock is None else f"{self.clock():.6f}"
        keys = list(pending)
        try:
            self._observe(keys=[self._observed_key(k) for k in keys],
                          args=[now, *(pending[k] for k in keys)])
        except redis.RedisError:
            with self._observed_lock:     # not lost: added to the next flush
                for key, count in pending.items():
                    self._observed[key] = self._observed.get(key, 0) + count
            raise

    # -- reporting --------------------------------------------------------------------------
    def observed_rate(self, key: str, window_s: int = 60) -> float:
        """Messages per second allowed for `key` over the last `window_s` whole seconds
        (the current, partial second is not counted). 1 <= window_s < 120."""
        if not 1 <= window_s < OBSERVED_SLOTS:
            raise InputError(f"window_s must be between 1 and {OBSERVED_SLOTS - 1} "
                             f"(got {window_s})")
        ring, now = self._read_with_time("hgetall", self._observed_key(key))
        current = math.floor(now)
        total = 0
        for name, count in cast(dict[Any, Any], ring).items():
            field = _text(name)
            if not field.startswith("c"):
                continue
            second = int(_text(ring.get(_same_type(name, "s" + field[1:]), -1)))
            if current - window_s <= second < current:
                total += int(count)
        return total / window_s

    def daily_count(self, limit: Limit) -> int:
        """Messages counted against `limit`'s daily cap: in its calendar day, or in the
        last 24 h (minute resolution) for a rolling cap."""
        if limit.day is not None:
            value, _ = self._read_with_time("get", self._cap_key(limit))
            return int(value or 0)
        buckets, now = self._read_with_time("hgetall", self._cap_key(limit))
        oldest = math.floor(now / 60) - ROLLING_MINUTES
        return sum(int(count) for name, count in cast(dict[Any, Any], buckets).items()
                   if _text(name).isdigit() and int(_text(name)) > oldest)

    def _read_with_time(self, command: str, key: str) -> tuple[Any, float]:
        """One round trip: the value and the time the script would use."""
        pipe = self.client.pipeline(transaction=False)
        getattr(pipe, command)(key)
        if self.clock is None:
            pipe.time()
        replies = pipe.execute()
        if self.clock is not None:
            return replies[0], self.clock()
        seconds, micros = replies[1]
        return replies[0], seconds + micros / 1e6

    def reset(self, key: str) -> None:
        """Forget everything about `key`: rate state, daily counters, observed rate."""
        names: list[Any] = [self._rate_key(key), f"{self.prefix}roll:{key}",
                            self._observed_key(key)]
        day_prefix = f"{self.prefix}day:{key}:"
        for name in self.client.scan_iter(match=_glob_escape(day_prefix) + "*", count=1000):
            if ":" not in _text(name)[len(day_prefix):]:  # not the day of "KEY:more"
                names.append(name)
        self.client.delete(*names)


def _same_type(like: Any, text: str) -> Any:
    return text.encode() if isinstance(like, bytes) else text


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
