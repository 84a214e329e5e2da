"""Relay pools and the circuit breaker: which relay a message goes through.

A campaign sends through a relay or a pool (settings.PoolConfig). For each message the pool
gives its relays in the order to try: `failover` in the listed order, `weighted` the first
drawn by weight and the rest after it by weight. A relay whose breaker is open is left out;
one at its daily cap is skipped by the send path (it spills to the next).

The breaker is shared by the whole fleet through Redis: `failures` consecutive connection or
relay errors open it for `cooldown_s`; then it is half-open and lets one message through as a
probe (one per cooldown): success closes it, failure opens it again. A success anywhere
resets the count.

The [pools.NAME] tables are read and checked here (`pool_configs`), at settings load.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from campaigns.errors import ConfigError
from campaigns.settings import BreakerConfig, PoolConfig, RelayConfig, Settings, check_table

if TYPE_CHECKING:   # no redis import: settings load this module to read [pools]
    import redis


def pool_configs(raw: Any, relays: dict[str, RelayConfig], where: str) -> dict[str, PoolConfig]:
    """The [pools.NAME] tables, read and checked here (settings hand them over at load,
    `campaigns.settings.hooks` "pools"); `relays` are the configured relays."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'pools' must be a table of [pools.NAME] tables")
    out = {}
    for name, table in raw.items():
        at = f"{where}: [pools.{name}]"
        table = check_table(table, at, {"strategy", "relays", "weights", "from_domains"})
        if name in relays:
            raise ConfigError(f"{at}: '{name}' is also a relay name; pick another pool name")
        strategy = str(table.get("strategy", "failover"))
        if strategy not in ("failover", "weighted"):
            raise ConfigError(f"{at}: strategy must be failover or weighted, got {strategy!r}")
        members = table.get("relays")
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise ConfigError(f"{at}: relays must be a non-empty list of relay names")
        missing = [m for m in members if m not in relays]
        if missing:
            raise ConfigError(f"{at}: relays {', '.join(missing)} are not configured "
                              f"(configured: {', '.join(sorted(relays)) or 'none'})")
        weights = table.get("weights", [1] * len(members))
        if (not isinstance(weights, list) or len(weights) != len(members)
                or not all(isinstance(w, (int, float)) and w > 0 for w in weights)):
            raise ConfigError(f"{at}: weights must be a list of {len(members)} positive numbers,"
                              f" one per relay")
        domains = table.get("from_domains", [])
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise ConfigError(f"{at}: from_domains must be a list of domain names")
        out[name] = PoolConfig(name=name, strategy=strategy, relays=tuple(members),
                               weights=tuple(float(w) for w in weights),
                               from_domains=tuple(d.lower() for d in domains))
    return out


_KEY = "campaigns:breaker:"


@dataclass(frozen=True)
class BreakerState:
    relay: str
    state: str                 # closed, open, half-open
    failures: int              # consecutive failures
    open_until: float | None   # epoch seconds, while open

    def describe(self) -> str:
        if self.state == "closed":
            return "closed" + (f" ({self.failures} recent failures)" if self.failures else "")
        if self.state == "open":
            until = time.strftime("%H:%M:%S", time.localtime(self.open_until or 0))
            return f"open after {self.failures} consecutive failures; probe after {until}"
        return f"half-open: the next message probes it ({self.failures} failures)"


#: a relay seen closed with no failure is taken as such for this long without asking Redis
#: again (a breaker opened by another process is obeyed within this)
CLEAN_FOR_S = 0.5


class Breaker:
    def __init__(self, client: redis.Redis, config: BreakerConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.config, self.clock = client, config, clock
        self._clean_until: dict[str, float] = {}   # relay -> monotonic deadline

    def state(self, relay: str) -> BreakerState:
        fails, opened = self.client.mget(_KEY + relay + ":fails", _KEY + relay + ":opened")
        failures = int(fails or 0)
        if failures < self.config.failures:
            return BreakerState(relay, "closed", failures, None)
        until = float(opened or 0) + self.config.cooldown_s
        if self.clock() < until:
            return BreakerState(relay, "open", failures, until)
        return BreakerState(relay, "half-open", failures, None)

    def allow(self, relay: str) -> bool:
        """May a message go through `relay` now? Half-open: only the one probe a cooldown."""
        if self._clean_until.get(relay, 0.0) > time.monotonic():
            return True
        state = self.state(relay)
        if state.state == "closed":
            if not state.failures:
                self._clean_until[relay] = time.monotonic() + CLEAN_FOR_S
            return True
        if state.state == "open":
            return False
        return bool(self.client.set(_KEY + relay + ":probe", "1", nx=True,
                                    px=int(self.config.cooldown_s * 1000)))

    def success(self, relay: str) -> None:
        if self._clean_until.get(relay, 0.0) > time.monotonic():
            return   # nothing to reset
        if self.client.exists(_KEY + relay + ":fails"):
            self.client.delete(_KEY + relay + ":fails", _KEY + relay + ":opened",
                               _KEY + relay + ":probe")

    def failure(self, relay: str) -> None:
        self._clean_until.pop(relay, None)
        pipe = self.client.pipeline()
        pipe.incr(_KEY + relay + ":fails")
        pipe.expire(_KEY + relay + ":fails", int(self.config.cooldown_s * 20) + 60)
        fails = int(pipe.execute()[0])
        if fails >= self.config.failures:   # (re)open: a failed probe starts a new cooldown
            self.client.set(_KEY + relay + ":opened", str(self.clock()),
                            ex=int(self.config.cooldown_s * 20) + 60)
            self.client.delete(_KEY + relay + ":probe")


def order(pool: PoolConfig, rng: random.Random | None = None) -> list[str]:
    """The pool's relays in the order one message tries them."""
    if pool.strategy == "failover":
        return list(pool.relays)
    rng = rng or random.Random()
    left = list(zip(pool.relays, pool.weights))
    out = []
    while left:
        pick = rng.choices(range(len(left)), weights=[w for _, w in left])[0]
        out.append(left.pop(pick)[0])
    return out


def candidates(settings: Settings, target: str | None) -> list[str]:
    """The relays one message of a campaign sending through `target` tries, best first: a
    pool's in its order, a plain relay alone. Breakers are asked by the send path as it
    goes, not here: asking a half-open breaker takes its one probe."""
    pool = settings.pool(target)
    return order(pool) if pool is not None else [settings.relay(target).name]


def first_relay(settings: Settings, target: str | None) -> str:
    """The relay a message of `target` tries first when every breaker is closed (for test
    sends and plans; weighted pools: the heaviest)."""
    pool = settings.pool(target)
    if pool is None:
        return settings.relay(target).name
    if pool.strategy == "weighted":
        return max(zip(pool.weights, pool.relays))[1]
    return pool.relays[0]
