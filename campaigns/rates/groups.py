"""Recipient domain → mailbox-provider group ("google", "microsoft", …), so one limit covers
every domain a provider receives for.

Lookup order: exact domain, then "name.*" patterns (name.<TLD> or name.<second level>.<TLD>,
such as outlook.co.uk or yahoo.co.jp), then, only when an `mx_lookup` is given, the MX hosts of
a company domain (Google Workspace, Microsoft 365, …), cached with a TTL.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Callable, Iterable, Mapping, Sequence

from campaigns.errors import ConfigError

BUILTIN_GROUPS: dict[str, tuple[str, ...]] = {
    "google": ("gmail.com", "googlemail.com"),
    "microsoft": ("outlook.*", "hotmail.*", "live.*", "msn.com"),
    "yahoo": ("yahoo.*", "ymail.com", "aol.com"),
    "apple": ("icloud.com", "me.com", "mac.com"),
    "italiaonline": ("libero.it", "virgilio.it", "inwind.it", "iol.it", "blu.it"),
    "tim": ("alice.it", "tim.it", "tin.it"),
}

# MX host suffix → group, for company domains hosted by a provider.
BUILTIN_MX_GROUPS: dict[str, str] = {
    "google.com": "google",              # aspmx.l.google.com
    "googlemail.com": "google",          # alt1.aspmx.l.googlemail.com
    "outlook.com": "microsoft",          # example-com.mail.protection.outlook.com
    "yahoodns.net": "yahoo",             # mta5.am0.yahoodns.net
    "icloud.com": "apple",               # mx01.mail.icloud.com
}

# Second-level labels under which providers register their brand per country
# (outlook.co.uk, hotmail.com.br, yahoo.co.jp); "name.*" accepts them before a TLD.
_SECOND_LEVELS = frozenset({"co", "com", "net", "org", "ne", "or", "ac", "gov", "edu", "gob"})

MxLookup = Callable[[str], list[str]]


def _is_public_suffix(rest: str) -> bool:
    """'it', 'co.uk', 'com.br': one alphabetic TLD, optionally after a known second level."""
    labels = rest.split(".")
    if len(labels) > 2 or not (labels[-1].isalpha() and len(labels[-1]) >= 2):
        return False
    return len(labels) == 1 or labels[0] in _SECOND_LEVELS


def _normalise(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


_MxAnswer = tuple[str | None, str | None]   # (group, most preferred MX host)


class _TtlCache:
    """A small LRU with per-entry expiry (monotonic seconds)."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self._data: OrderedDict[str, tuple[float, _MxAnswer]] = OrderedDict()
        self._size, self._ttl_s, self._clock = size, ttl_s, clock
        self._lock = threading.Lock()

    def get(self, key: str) -> _MxAnswer | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[0] <= self._clock():
                return None
            self._data.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: _MxAnswer) -> None:
        with self._lock:
            self._data[key] = (self._clock() + self._ttl_s, value)
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


class DomainGroups:
    """Maps a recipient domain to its provider group, or None.

    extra: more groups or more domains for a built-in group (from TOML), e.g.
        {"google": ["mycompany.it"], "fastweb": ["fastwebnet.it", "fastweb.*"]}; an extra
        entry wins over a built-in one for the same domain.
    mx_lookup: off by default. When given (e.g. `dns_mx_lookup()`), domains not known
        statically are grouped by their MX hosts (`mx_groups` suffix → group), cached with
        an LRU of `cache_size` entries for `cache_ttl_s`. It takes a domain and returns its
        MX host names in preference order, [] when there are none or the lookup failed.
    Raises ConfigError for a malformed `extra`.
    """

    def __init__(self, extra: Mapping[str, Sequence[str]] | None = None,
                 mx_lookup: MxLookup | None = None, *,
                 mx_groups: Mapping[str, str] | None = None, cache_size: int = 10_000,
                 cache_ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._exact: dict[str, str] = {}
        self._brands: dict[str, str] = {}   # "outlook" → "microsoft" for "outlook.*"
        for group, patterns in BUILTIN_GROUPS.items():
            self._add(group, patterns)
        for group, more in _checked_extra(extra).items():
            self._add(group, more)
        self._mx_lookup = mx_lookup
        self._mx_groups = {_normalise(k): v for k, v in (mx_groups or BUILTIN_MX_GROUPS).items()}
        self._mx_cache = _TtlCache(cache_size, cache_ttl_s, clock)
        self._static = lru_cache(maxsize=cache_size)(self._static_group)

    def _add(self, group: str, patterns: Iterable[str]) -> None:
        for pattern in map(_normalise, patterns):
            if pattern.endswith(".*"):
                self._brands[pattern[:-2]] = group
            else:
                self._exact[pattern] = group

    def _static_group(self, domain: str) -> str | None:
        found = self._exact.get(domain)
        if found is not None:
            return found
        brand, _, rest = domain.partition(".")
        group = self._brands.get(brand)
        return group if group is not None and _is_public_suffix(rest) else None

    def group(self, domain: str) -> str | None:
        """The group of `domain` ("Gmail.COM." → "google"), None when it has none."""
        domain = _normalise(domain)
        found = self._exact.get(domain)  # the common case, before any cache bookkeeping
        if found is not None:
            return found
        found = self._static(domain)
        if found is not None or self._mx_lookup is None:
            return found
        return self._by_mx(domain)[0]

    def mx_host(self, domain: str) -> str | None:
        """The most preferred MX host of a domain that has no group, when MX lookup is on and
        the domain has one ("mx1.hoster.example"); None otherwise. Domains with the same
        MX host are the same receiver: a throttle one of them reports holds for all."""
        domain = _normalise(domain)
        if self._mx_lookup is None or self._static(domain) is not None:
            return None
        group, host = self._by_mx(domain)
        return host if group is None else None

    def _by_mx(self, domain: str) -> _MxAnswer:
        assert self._mx_lookup is not None
        cached = self._mx_cache.get(domain)
        if cached is not None:
            return cached
        hosts = [_normalise(host) for host in self._mx_lookup(domain)]
        found = next((g for g in map(self._mx_group, hosts) if g is not None), None)
        answer = (found, hosts[0] if hosts and hosts[0] else None)
        self._mx_cache.put(domain, answer)
        return answer

    def _mx_group(self, host: str) -> str | None:
        labels = host.split(".")
        for i in range(len(labels) - 1):
            group = self._mx_groups.get(".".join(labels[i:]))
            if group is not None:
                return group
        return None


def _checked_extra(extra: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    if not extra:
        return {}
    checked: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for group, patterns in extra.items():
        if not isinstance(group, str) or not group.strip():
            raise ConfigError(f"domain groups: group name {group!r} must be non-empty text")
        if isinstance(patterns, str) or not isinstance(patterns, Sequence):
            raise ConfigError(f"domain groups: '{group}' must be a list of domains, "
                              f'like ["example.com", "brand.*"]')
        for pattern in patterns:
            _check_pattern(group, pattern, seen)
        checked[group] = list(patterns)
    return checked


def _check_pattern(group: str, pattern: object, seen: dict[str, str]) -> None:
    if not isinstance(pattern, str):
        raise ConfigError(f"domain groups: '{group}' has {pattern!r}; expected a domain "
                          f"like 'example.com' or 'brand.*'")
    name = _normalise(pattern)
    body = name[:-2] if name.endswith(".*") else name
    if not body or "*" in body or "@" in body or " " in body or (name == body and "." not in body):
        raise ConfigError(f"domain groups: '{group}' has {pattern!r}; expected a domain "
                          f"like 'example.com' or 'brand.*'")
    if seen.get(name, group) != group:
        raise ConfigError(f"domain groups: {pattern!r} is in both '{seen[name]}' and '{group}'")
    seen[name] = group


def dns_mx_lookup(timeout_s: float = 2.0, nameservers: Sequence[str] = ()) -> MxLookup:
    """An `mx_lookup` backed by dnspython (the `dns` extra). Raises ConfigError at once when
    dnspython is not installed. The returned function gives MX hosts by preference and []
    for no MX, no domain or a failed lookup.

    nameservers: "IP" or "IP:PORT" ("[IPv6]:PORT") to ask instead of /etc/resolv.conf's."""
    try:
        import dns.exception
        import dns.nameserver
        import dns.resolver
    except ImportError as err:
        raise ConfigError("grouping domains by MX needs dnspython: "
                          "pip install campaigns[dns]") from err
    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*_host_port(ns, 53))
                                for ns in nameservers]
    resolver.lifetime = timeout_s

    def lookup(domain: str) -> list[str]:
        try:
            answer = resolver.resolve(domain, "MX")
        except dns.exception.DNSException:
            return []
        records = sorted(answer, key=lambda record: int(record.preference))
        return [str(record.exchange).rstrip(".").lower() for record in records]

    return lookup


def _host_port(text: str, default: int) -> tuple[str, int]:
    """"10.0.0.53" → ("10.0.0.53", 53); "127.0.0.1:5353", "[::1]:5353" with their port."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        return text.strip().strip("[]"), default     # no port, or a bare IPv6 address
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"[rates] mx_nameservers: {text!r}; expected IP or IP:PORT")
    return host.strip("[]"), int(port)
