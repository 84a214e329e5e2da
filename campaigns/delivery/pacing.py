"""Send pacing for one worker process: which limits a message is under (its relay, the
relay's bulk share while transactional mail is about, its receiver's domain group or domain,
its campaign), their current values (TOML, `rates set` overrides, adaptive throttling,
warm-up), and one atomic acquire in Redis."""
from __future__ import annotations

import random
import re
import time
from datetime import date, datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

import redis

from campaigns.bounces import Classification
from campaigns.db import Database
from campaigns.errors import RelayTemporaryError
from campaigns.delivery.parking import Parking
from campaigns.delivery.ratestore import current_limits
from campaigns.rates import (AdaptiveThrottle, Decision, DomainGroups, Limit, RedisLimiter,
                             WarmupPlan, dns_mx_lookup)
from campaigns.rates.limiter import ALLOWED, calendar_day
from campaigns.settings import LimitConfig, Settings, WarmupConfig

#: how long a worker trusts its copy of the limits (a `rates set` reaches it within this)
REFRESH_S = 0.5
#: in-slot waits are retried at most this often before the task is re-queued
MAX_SPINS = 3
#: targets whose sending rate is always counted, limited or not (a throttle halves it)
OBSERVED = ("relay:", "domain:")
#: seconds of observed sending a throttle of an unconfigured target halves
OBSERVED_WINDOW_S = 10

# A denied message books the next free slot of the limit that stopped it, within a horizon,
# so re-queued messages come back spread at the limit's own pace instead of all at once.
# KEYS[1] slot key; ARGV: interval_s, horizon_s. Returns the wait in seconds, or -1 when
# the next slot is beyond the horizon (nothing booked). Redis's own clock, like the limiter.
_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local interval, horizon = tonumber(ARGV[1]), tonumber(ARGV[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt < now then nxt = now end
nxt = nxt + interval
if nxt - now > horizon then return '-1' end
redis.call('SET', KEYS[1], tostring(nxt), 'PX', math.ceil((horizon + 60) * 1000))
return tostring(nxt - now)
"""
#: A transactional message that asks for a relay's token marks the relay for this long:
#: while marked, bulk mail is also under `relay:NAME:bulk`, its share (1 -
#: transactional_share) of the relay's rate, so documents find room at once; unmarked, bulk
#: may use the whole rate (the reservation is work-conserving, issue 11 item 6).
TX_ACTIVE_MS = 2000
#: a worker re-marks a relay at most this often (one Redis SET, not one per message)
TX_MARK_EVERY_S = 0.25
#: how far ahead denied messages book slots (short, so a raised rate is used within about
#: this long); the rest come back after this long, doubling with each re-queue up to 16×
BOOKING_HORIZON_S = 2.0

#: A throttle reply that names our own client, connection or account is about our relay
#: (the server we talk to), whoever the recipient: Postfix anvil "421 4.7.0 Error: too many
#: connections from 127.0.0.1", "450 4.7.1 Error: too much mail from 127.0.0.1"; Yahoo
#: "[TSS04] Messages from 1.2.3.4 temporarily deferred"; "your IP", "your account".
_NAMES_US = re.compile(
    r"\bfrom \[?(\d{1,3}\.){3}\d{1,3}\]?|\bfrom \[?[0-9a-f]{0,4}:[0-9a-f:.]+\]?|"
    r"\byour (ip|host|client|server|connection|account|sending)|\bour account|"
    r"too many (concurrent |simultaneous |open |smtp )*(connections|sessions|connects)|"
    r"connection (rate|frequency|count)", re.IGNORECASE)


class Pacer:
    def __init__(self, settings: Settings, db: Database, client: redis.Redis,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.db, self.client, self.clock = settings, db, client, clock
        rates = settings.rates
        self.limiter = RedisLimiter(client)
        self.adaptive = AdaptiveThrottle(client, quiet_s=rates.quiet_period_s, clock=clock)
        self.groups = DomainGroups(rates.groups, mx_lookup=dns_mx_lookup(
            nameservers=rates.mx_nameservers) if rates.mx_lookup else None)
        self.zone = ZoneInfo(rates.timezone)
        self._limits: dict[str, LimitConfig] = {}
        self._effective: dict[str, tuple[float | None, str | None]] = {}
        self._loaded_at = float("-inf")
        self._throttled: set[str] = set()
        self._tx_active: set[str] = set()          # relays with transactional mail about
        self._tx_marked: dict[str, float] = {}     # relay -> monotonic time this process marked it
        self._book = client.register_script(_BOOK)
        self.parking = Parking(client, clock=clock)

    @property
    def limits_by_target(self) -> dict[str, LimitConfig]:
        self.refresh()
        return self._limits

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._loaded_at >= REFRESH_S:
            self._limits = current_limits(self.db, self.client, self.settings)
            self._throttled = self.adaptive.active()
            self._tx_active = self._read_tx_active()
            self._effective.clear()
            self._loaded_at = now

    def unlimited(self) -> bool:
        """No rate, cap, warm-up or throttle state anywhere (as of the last refresh): every
        acquire is allowed and only counted, so the send path may claim before it asks."""
        self.refresh()
        return not self._limits and not self._throttled and not self.settings.rates.warmup

    def _read_tx_active(self) -> set[str]:
        relays = list(self.settings.relays)
        if not relays:
            return set()
        marks: list[Any] = self.client.mget([f"campaigns:tx:{r}" for r in relays])
        return {relay for relay, mark in zip(relays, marks) if mark is not None}

    def mark_transactional(self, relay: str) -> None:
        """A transactional message wants `relay`: bulk mail keeps to its share for the next
        TX_ACTIVE_MS (on every worker within REFRESH_S)."""
        now = time.monotonic()
        if now - self._tx_marked.get(relay, float("-inf")) < TX_MARK_EVERY_S:
            return
        self._tx_marked[relay] = now
        self.client.set(f"campaigns:tx:{relay}", "1", px=TX_ACTIVE_MS)
        self._tx_active.add(relay)

    def transactional_waiting(self, relay: str) -> bool:
        """Whether transactional mail asked for `relay` in the last TX_ACTIVE_MS."""
        self.refresh()
        return relay in self._tx_active

    @property
    def throttled_targets(self) -> set[str]:
        """The targets with a throttle state now (held back, or recovering)."""
        self.refresh()
        return set(self._throttled)

    def group_of(self, address: str) -> str | None:
        return self.groups.group(address.rpartition("@")[2].lower())

    def receiver(self, address: str) -> tuple[str, bool]:
        """The receiver's target, `domain:GROUP`, else `domain:<its MX host>` when MX lookup
        is on and the domain has one (every domain that host receives for shares it), else
        `domain:<recipient domain>`; and whether it is a group (a domain or MX host alone
        is limited only when set or throttled)."""
        domain = address.rpartition("@")[2].lower().rstrip(".")
        group = self.groups.group(domain)
        if group:
            return f"domain:{group}", True
        return "domain:" + (self.groups.mx_host(domain) or domain), False

    def targets(self, relay: str, campaign: str, priority: str, address: str) -> list[str]:
        out = [f"relay:{relay}"]
        if priority != "transactional":
            out.append(f"relay:{relay}:bulk")
        receiver, grouped = self.receiver(address)
        if grouped or receiver in self._limits or receiver in self._throttled:
            out.append(receiver)
        out.append(f"campaign:{campaign}")
        return out

    def config(self, target: str) -> LimitConfig | None:
        if target.endswith(":bulk"):
            relay = target.removesuffix(":bulk")
            base = self._limits.get(relay)
            if base is None or base.rate_per_s is None \
                    or relay.removeprefix("relay:") not in self._tx_active:
                return None     # no transactional mail about: bulk may use the whole rate
            share = 1.0 - min(0.95, self.settings.rates.transactional_share)
            return LimitConfig(target=target, rate_per_s=base.rate_per_s * share, burst=base.burst)
        return self._limits.get(target)

    def effective(self, target: str, configured: float | None) -> tuple[float | None, str | None]:
        """The rate to use now and why it is below `configured` (adaptive throttling);
        cached for a second. A target with no configured rate that was throttled is held to
        the lowered rate until it has recovered to the rate it was seen sending at."""
        if target not in self._throttled:    # no throttle state: no need to ask Redis
            return configured, None
        if target not in self._effective:
            self._effective[target] = self.adaptive.current(target, configured)
        return self._effective[target]

    def warmup_of(self, target: str) -> WarmupConfig | None:
        """The relay's warm-up plan when `target` is a relay that has one."""
        if not target.startswith("relay:") or target.endswith(":bulk"):
            return None
        return self.settings.rates.warmup.get(target.removeprefix("relay:"))

    def daily_cap(self, target: str, config: LimitConfig | None) -> int | None:
        """Today's cap: the configured one, or the warm-up's of today when there is a plan."""
        cap = config.daily_cap if config else None
        warmup = self.warmup_of(target)
        if warmup:
            plan = WarmupPlan(start=warmup.start, factor=warmup.factor,
                              start_date=warmup.start_date, max_cap=cap)
            cap = plan.cap_on(self.today())
        return cap

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock(), self.zone).date()

    def limits(self, relay: str, campaign: str, priority: str, address: str) -> list[Limit]:
        self.refresh()
        day: str | None = None
        day_ends_at: float | None = None
        if self.settings.rates.daily_window == "calendar":
            day, day_ends_at = calendar_day(self.zone, self.clock())
        out = []
        for target in self.targets(relay, campaign, priority, address):
            config = self.config(target)
            rate, burst = self._rate_and_burst(target, config)
            cap = None if target.endswith(":bulk") else self.daily_cap(target, config)
            if rate is None and cap is None and not target.startswith(OBSERVED):
                continue  # relays and receiver groups are always counted (observed rate)
            out.append(Limit(key=target, rate_per_s=rate, burst=burst, daily_cap=cap, day=day,
                             day_ends_at=day_ends_at))
        return out

    def _rate_and_burst(self, target: str, config: LimitConfig | None) -> tuple[float | None, int]:
        rate, _ = self.effective(target, config.rate_per_s if config else None)
        burst = (config.burst if config and config.burst else None) or max(1, int(rate or 1))
        return rate, burst

    def rate_of(self, target: str) -> tuple[float | None, int]:
        """`target`'s effective rate now (None: not limited) and its burst."""
        self.refresh()
        return self._rate_and_burst(target, self.config(target))

    @staticmethod
    def parks(binding: str | None) -> bool:
        """Whether a message denied by `binding` is parked (see campaigns.delivery.parking): a
        receiver group's or a campaign's rate, which other messages need not wait for.
        Under the relay's own limits every message waits alike, so it books a slot."""
        return bool(binding) and not str(binding).startswith("relay:") \
            and not str(binding).endswith(":daily")

    def acquire(self, relay: str, campaign: str, priority: str, address: str,
                hops: int = 0) -> Decision:
        """One atomic acquire over every limit. A short wait under the relay's own limit is
        spent here (the slot is held at most `max_wait_s` a spin): every message waits on
        that limit anyway; a longer one is returned as the wait until a slot booked for
        this message (see `book`). A wait under a receiver group's or a campaign's limit is
        never spent in the slot, which other receivers' messages can use meanwhile: it is
        returned as it is, for the caller to park the message (`parks`), as is a daily
        cap's."""
        if priority == "transactional":
            self.mark_transactional(relay)
        limits = self.limits(relay, campaign, priority, address)
        if all(limit.rate_per_s is None and limit.daily_cap is None for limit in limits):
            # nothing to check, only rates to observe: counted locally, flushed in batches
            self.limiter.observe([limit.key for limit in limits])
            return ALLOWED
        for _ in range(MAX_SPINS):
            decision = self.limiter.acquire(limits)
            if (decision.allowed or decision.wait_s > self.settings.rates.max_wait_s
                    or self.parks(decision.binding)):
                break
            time.sleep(decision.wait_s)
        else:
            decision = self.limiter.acquire(limits)
        if (decision.allowed or decision.wait_s >= self.settings.rates.long_wait_s
                or self.parks(decision.binding)):
            return decision
        return Decision(False, max(decision.wait_s, self.book(limits, decision.binding, hops)),
                        decision.binding)

    def book(self, limits: list[Limit], binding: str | None, hops: int = 0) -> float:
        """Seconds until the denied message should come back: its own booked slot of the
        binding limit, or beyond the booking horizon (spread, and further for a message
        re-queued many times, so a long backlog does not spin) when the slots are taken."""
        limit = next((lim for lim in limits if lim.key == binding), None)
        if limit is not None and limit.rate_per_s:
            booked: Any = self._book(keys=[f"campaigns:book:{limit.key}"],
                                     args=[1.0 / limit.rate_per_s, BOOKING_HORIZON_S])
            wait = float(booked)
            if wait >= 0:
                return wait
        return BOOKING_HORIZON_S * float(2 ** min(hops, 4)) * random.uniform(1.0, 1.5)

    def throttle_target(self, relay: str, address: str, text: str) -> str:
        """Who said "slow down": our relay when it is a provider's API (its 429 is about our
        account) or the reply names our client, connection or account; else the receiver."""
        if self.settings.relay(relay).kind != "smtp" or _NAMES_US.search(text):
            return f"relay:{relay}"
        return self.receiver(address)[0]

    def throttled(self, relay: str, address: str, err: RelayTemporaryError,
                  verdict: Classification) -> float | None:
        """A throttle reply: halve the rate of whoever said it (`throttle_target`). Returns
        the retry-after hint to honour."""
        self.refresh()
        reply = " ".join(str(p) for p in (err.code, err.enhanced, err.text) if p)
        target = self.throttle_target(relay, address, reply)
        config = self._limits.get(target)
        base = config.rate_per_s if config else None
        if base is None:   # no configured rate: halve what this target was seen sending
            base = max(1.0, self.limiter.observed_rate(target, OBSERVED_WINDOW_S))
        self.adaptive.throttle(target, base, err.retry_after_s,
                               f"throttled ({verdict.reason}): {reply}"[:300])
        self._throttled.add(target)
        self._effective.pop(target, None)
        return err.retry_after_s

    def reset(self, target: str) -> bool:
        """Clear `target`'s throttle state (`campaigns rates reset`): its configured rate
        applies at once. True when it had one."""
        self._effective.pop(target, None)
        self._throttled.discard(target)
        return self.adaptive.reset(target)
