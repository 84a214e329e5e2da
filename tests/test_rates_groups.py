"""Recipient domain → provider group, built-in, from TOML extras, and by MX (fake resolver)."""
from __future__ import annotations

import sys

import pytest

from campaigns.errors import ConfigError
from campaigns.rates import DomainGroups, dns_mx_lookup


@pytest.mark.parametrize("domain, group", [
    ("gmail.com", "google"), ("googlemail.com", "google"),
    ("outlook.com", "microsoft"), ("outlook.it", "microsoft"), ("outlook.co.uk", "microsoft"),
    ("hotmail.it", "microsoft"), ("hotmail.co.uk", "microsoft"), ("hotmail.com.br", "microsoft"),
    ("live.com", "microsoft"), ("live.it", "microsoft"), ("msn.com", "microsoft"),
    ("yahoo.com", "yahoo"), ("yahoo.it", "yahoo"), ("yahoo.co.jp", "yahoo"),
    ("ymail.com", "yahoo"), ("aol.com", "yahoo"),
    ("icloud.com", "apple"), ("me.com", "apple"), ("mac.com", "apple"),
    ("libero.it", "italiaonline"), ("virgilio.it", "italiaonline"), ("inwind.it", "italiaonline"),
    ("iol.it", "italiaonline"), ("blu.it", "italiaonline"),
    ("alice.it", "tim"), ("tim.it", "tim"), ("tin.it", "tim"),
    ("GMail.COM", "google"), ("gmail.com.", "google"), (" Hotmail.CO.UK ", "microsoft"),
    ("example.com", None), ("outlook.example.com", None), ("gmail.com.evil.net", None),
    ("mail.gmail.com", None), ("outlook", None), ("outlook.c0m", None), ("yahoo.a.b.c", None),
    ("notgmail.com", None), ("hotmail.x", None),
])
def test_builtin_groups(domain: str, group: str | None) -> None:
    assert DomainGroups().group(domain) == group


def test_extra_groups_extend_and_override_builtins() -> None:
    groups = DomainGroups(extra={"google": ["acme.it"], "fastweb": ["fastwebnet.it", "fastweb.*"],
                                 "aol": ["aol.com"]})
    assert groups.group("acme.it") == "google"
    assert groups.group("gmail.com") == "google"
    assert groups.group("fastwebnet.it") == "fastweb"
    assert groups.group("fastweb.co.uk") == "fastweb"
    assert groups.group("aol.com") == "aol"          # configuration wins over the built-in
    assert groups.group("yahoo.com") == "yahoo"


@pytest.mark.parametrize("extra", [
    {"x": "acme.it"}, {"x": [42]}, {"x": ["*.acme.it"]}, {"x": ["a b.it"]}, {"x": ["acme"]},
    {"x": ["user@acme.it"]}, {"": ["acme.it"]}, {"x": ["acme.it"], "y": ["ACME.it"]},
])
def test_malformed_extra_is_a_config_error(extra: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="domain groups"):
        DomainGroups(extra=extra)  # type: ignore[arg-type]


class FakeResolver:
    """MX answers as a DNS server would give them (trailing dots, mixed case)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, domain: str) -> list[str]:
        self.asked.append(domain)
        return self.answers.get(domain, [])


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


MX = {
    "acme.it": ["ASPMX.L.GOOGLE.COM.", "alt1.aspmx.l.google.com."],
    "contoso.com": ["contoso-com.mail.protection.outlook.com."],
    "old.example": ["alt1.aspmx.l.googlemail.com."],
    "shop.example": ["mta5.am0.yahoodns.net."],
    "studio.example": ["mx01.mail.icloud.com."],
    "self.example": ["mail.self.example."],
    "mixed.example": ["mx.self.example.", "aspmx.l.google.com."],
}


def test_mx_mapping_is_off_by_default() -> None:
    assert DomainGroups().group("acme.it") is None


@pytest.mark.parametrize("domain, group", [
    ("acme.it", "google"), ("contoso.com", "microsoft"), ("old.example", "google"),
    ("shop.example", "yahoo"), ("studio.example", "apple"), ("self.example", None),
    ("mixed.example", "google"), ("nomx.example", None),
])
def test_company_domains_by_mx(domain: str, group: str | None) -> None:
    assert DomainGroups(mx_lookup=FakeResolver(MX)).group(domain) == group


def test_mx_answers_are_cached_with_a_ttl_and_an_lru() -> None:
    resolver, clock = FakeResolver(MX), FakeClock()
    groups = DomainGroups(mx_lookup=resolver, cache_ttl_s=60, cache_size=2, clock=clock)
    assert groups.group("acme.it") == "google"
    assert groups.group("ACME.it") == "google"
    assert groups.group("self.example") is None
    assert groups.group("self.example") is None      # a miss is cached too
    assert groups.group("gmail.com") == "google"     # static domains never ask DNS
    assert resolver.asked == ["acme.it", "self.example"]
    clock.now = 61
    assert groups.group("acme.it") == "google"
    assert resolver.asked[-1] == "acme.it" and len(resolver.asked) == 3
    groups.group("contoso.com")
    groups.group("shop.example")                     # evicts acme.it (least recently used)
    groups.group("acme.it")
    assert resolver.asked.count("acme.it") == 3


def test_custom_mx_groups() -> None:
    groups = DomainGroups(mx_lookup=FakeResolver(MX), mx_groups={"self.example": "self"})
    assert groups.group("self.example") == "self"
    assert groups.group("acme.it") is None


def test_default_mx_lookup_needs_dnspython(monkeypatch: pytest.MonkeyPatch) -> None:
    assert callable(dns_mx_lookup())                  # installed in the dev environment
    for name in ("dns", "dns.resolver", "dns.exception"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"pip install campaigns\[dns\]"):
        dns_mx_lookup()


def test_mx_host_of_an_ungrouped_domain_and_nameserver_spelling() -> None:
    groups = DomainGroups(mx_lookup=FakeResolver({"corp.example": ["MX1.Hoster.Example."],
                                                  "ws.example": ["aspmx.l.google.com"],
                                                  "null.example": ["."]}))
    assert groups.mx_host("corp.example") == "mx1.hoster.example"
    assert groups.mx_host("ws.example") is None         # grouped by its MX: "google"
    assert groups.mx_host("gmail.com") is None          # grouped statically
    assert groups.mx_host("null.example") is None       # RFC 7505 null MX
    assert groups.mx_host("none.example") is None
    assert DomainGroups().mx_host("corp.example") is None   # MX lookup off
    from campaigns.errors import ConfigError
    assert callable(dns_mx_lookup(nameservers=["127.0.0.1:5353", "[::1]:53", "10.0.0.53", "::1"]))
    with pytest.raises(ConfigError, match="mx_nameservers: '127.0.0.1:dns'; expected IP or IP:PORT"):
        dns_mx_lookup(nameservers=["127.0.0.1:dns"])
