"""Issue 17, DKIM: keys made by `campaigns dkim keygen` (the real command), messages sent by
real workers to the project's SMTP sink, and the caught bytes verified by independent
verifiers against the public keys served by a real DNS server on 127.0.0.1 started here
(dnslib): dkimpy's verifier looking the keys up with dnspython, and Debian's
`opendkim-testmsg` (opendkim-tools)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from email.policy import SMTP
from pathlib import Path
from typing import Any, Callable, Iterator

import dkim
import dns.resolver
import pytest
from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from campaigns import lifecycle
from campaigns.audience.contacts import import_contacts
from campaigns.content.templates import add_template
from campaigns.errors import ConfigError
from campaigns.settings import load_settings
from tests import debian
from tests.conftest import CI, need
from tests.helpers import HTML, free_port, write_csv

#: what every signature must cover (a bulk message has them all)
SIGNED = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
          "list-unsubscribe", "list-unsubscribe-post", "x-campaigns-delivery"}
_ZONE_LINE = re.compile(r"^  zone file line: (\S+)\. 3600 IN TXT \( (.*) \)$", re.M)


class Zone(BaseResolver):
    """TXT records by name, as keygen printed them (each a list of <= 255-char strings)."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.asked: list[str] = []

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        self.asked.append(name)
        if request.q.qtype == QTYPE.TXT and name in self.records:
            strings = [s.encode("ascii") for s in self.records[name]]
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(strings), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture
def zone() -> Iterator[tuple[Zone, int]]:
    """A real DNS server (UDP) on 127.0.0.1, on a free port."""
    resolver = Zone()
    server = DNSServer(resolver, address="127.0.0.1", port=0,
                       logger=DNSLogger(logf=lambda *_: None))
    server.start_thread()
    try:
        yield resolver, server.server.server_address[1]
    finally:
        server.stop()


def txt_lookup(port: int) -> Callable[..., bytes | None]:
    """dkimpy's `dnsfunc`: the TXT record asked of our server with dnspython."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], port

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode("ascii").rstrip("."), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(b"".join(r.strings) for r in answer)
    return get_txt


def keygen(project: Any, domain: str, selector: str, *extra: str) -> tuple[dict[str, list[str]], str]:
    """`campaigns dkim keygen` in its own process: (the TXT records it says to publish, by
    name, as their quoted strings; the TOML it says to add)."""
    proc = project.cli("dkim", "keygen", domain, "--selector", selector, *extra, process=True)
    assert proc.returncode == 0, proc.stderr
    records = {name.lower(): re.findall(r'"([^"]*)"', strings)
               for name, strings in _ZONE_LINE.findall(proc.stdout)}
    return records, proc.stdout.split("add to campaigns.toml:\n", 1)[1]


def signatures(data: bytes) -> list[dict[bytes, bytes]]:
    d = dkim.DKIM(data)
    return [dkim.util.parse_tag_value(v) for k, v in d.headers if k.lower() == b"dkim-signature"]


def verified(data: bytes, dnsfunc: Callable[..., bytes | None]) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of `data`, top first."""
    d = dkim.DKIM(data)

    def one(i: int) -> bool:
        try:
            return bool(d.verify(i, dnsfunc=dnsfunc))
        except dkim.DKIMException:    # what dkim.verify() answers False for (a body changed)
            return False
    return [one(i) for i in range(len(signatures(data)))]


def changed_body(data: bytes) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    assert body, "no body"
    return head + b"\r\n\r\n" + body.replace(b"e", b"E", 1)


# opendkim-testmsg asks the system resolver (libresolv: /etc/resolv.conf, port 53 only; it has
# no option for another server or port). So it runs in a private network and mount namespace
# (unshare) where the same records are served by the same dnslib resolver on 127.0.0.1:53 and
# /etc/resolv.conf is a bind-mounted "nameserver 127.0.0.1": a real lookup over UDP by
# OpenDKIM's own code, without touching the machine's resolver.
_NETNS = r"""
import json, subprocess, sys
from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer
records, resolv, files = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3:]
class Zone(BaseResolver):
    def resolve(self, request, handler):
        reply, name = request.reply(), str(request.q.qname).rstrip(".").lower()
        if request.q.qtype == QTYPE.TXT and name in records:
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=60,
                                rdata=TXT([s.encode() for s in records[name]])))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
DNSServer(Zone(), address="127.0.0.1", port=53, logger=DNSLogger(logf=lambda *_: None)).start_thread()
out = []
for path in files:
    with open(path, "rb") as f:
        p = subprocess.run(["opendkim-testmsg"], stdin=f, capture_output=True, text=True)
    out.append([p.returncode, (p.stdout + p.stderr).strip()])
print(json.dumps(out))
"""


def opendkim_verdicts(tmp: Path, records: dict[str, list[str]],
                      messages: list[bytes]) -> list[tuple[int, str]]:
    """(exit code, output) of `opendkim-testmsg` verifying each message: 0 and no output
    when every signature verifies."""
    try:
        debian.ensure("opendkim-testmsg", "opendkim-tools")
        debian.ensure("unshare", "util-linux")
        debian.ensure("ip", "iproute2")
    except RuntimeError as exc:
        need("opendkim-testmsg", exc)
    tmp.mkdir(exist_ok=True)
    (tmp / "records.json").write_text(json.dumps(records))
    (tmp / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    paths = []
    for i, data in enumerate(messages):
        paths.append(tmp / f"{i}.eml")
        paths[-1].write_bytes(data)
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    proc = subprocess.run(["unshare", "--net", "--mount", sys.executable, "-c", _NETNS,
                           str(tmp / "records.json"), str(tmp / "resolv.conf"), *map(str, paths)],
                          capture_output=True, text=True, timeout=120, env=env)
    if proc.returncode != 0 and "Operation not permitted" in proc.stderr and not CI:
        pytest.skip(f"no network namespace here for opendkim-testmsg: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    return [(code, text) for code, text in json.loads(proc.stdout)]


def campaign(project: Any, name: str, n: int, from_addr: str, relay: str | None = None) -> list[str]:
    """n contacts in list NAME-list, template NAME-tpl, campaign NAME from `from_addr`."""
    rows = [(f"{name}{i}@example.test", f"Nome{i}", f"C{i:05d}") for i in range(n)]
    db, settings = project.ctx.db, project.ctx.settings
    import_contacts(db, write_csv(project.root / f"{name}.csv", rows), f"{name}-list")
    (project.root / f"{name}.html").write_text(HTML, encoding="utf-8")
    add_template(db, f"{name}-tpl", "Offerta per {{ contact.first_name }}", project.root / f"{name}.html")
    lifecycle.create_campaign(db, settings, name=name, list_name=f"{name}-list",
                              template=f"{name}-tpl", from_addr=from_addr, relay=relay)
    return [r[0] for r in rows]


def caught(project: Any, prefix: str) -> list[bytes]:
    return [r.data for r in project.sink.received if r.rcpt.startswith(prefix)]


def test_keygen_writes_private_keys_prints_the_record_and_never_overwrites(project: Any) -> None:
    records, toml = keygen(project, "Shop.Test", "s2026", "--ed25519")
    rsa_path = project.root / "data" / "dkim" / "shop.test.s2026.pem"
    ed_path = project.root / "data" / "dkim" / "shop.test.s2026-ed25519.pem"
    for path in (rsa_path, ed_path):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert b"BEGIN RSA PRIVATE KEY" in rsa_path.read_bytes()
    assert b"BEGIN PRIVATE KEY" in ed_path.read_bytes()
    rsa_txt = records["s2026._domainkey.shop.test"]
    assert len(rsa_txt) == 2 and all(len(s) <= 255 for s in rsa_txt)   # 2048 bits: 392 chars
    assert "".join(rsa_txt).startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert "".join(records["s2026-ed25519._domainkey.shop.test"]).startswith("v=DKIM1; k=ed25519; p=")
    assert toml.splitlines() == [
        '[dkim."shop.test"]', 'selector = "s2026"', f'key_file = "{rsa_path}"',
        'ed25519_selector = "s2026-ed25519"', f'ed25519_key_file = "{ed_path}"']
    project.extra_toml = toml
    project.write_config()
    assert project.ctx.settings.dkim["shop.test"].ed25519_key_file == ed_path   # it loads

    before = rsa_path.read_bytes()
    again = project.cli("dkim", "keygen", "shop.test", "--selector", "s2026", check=False)
    assert again.returncode == 1 and "exists: not replaced" in again.stderr
    assert rsa_path.read_bytes() == before
    custom = project.root / "keys" / "news.pem"
    keygen(project, "shop.test", "s2026", "--force")
    keygen(project, "shop.test", "other", "--key-file", str(custom))
    assert rsa_path.read_bytes() != before and custom.stat().st_mode & 0o777 == 0o600


def test_a_campaign_is_signed_and_verifies_over_dns_with_dkimpy_and_opendkim(
        project: Any, zone: tuple[Zone, int], tmp_path: Path) -> None:
    server, port = zone
    records, toml = keygen(project, "shop.test", "s1", "--ed25519")
    server.records.update(records)
    project.extra_toml = toml
    project.write_config()
    addresses = campaign(project, "signed", 30, "Negozio Più <news@shop.test>")
    project.workers(2)
    project.cli("launch", "signed")
    snap = project.wait_status("signed")
    assert snap["status"] == "finished" and snap["counts"]["sent"] == 30, snap
    messages = caught(project, "signed")
    assert len(messages) == 30 and sorted(project.sink.counts()) == sorted(addresses)

    lookup = txt_lookup(port)
    for data in messages:
        sigs = signatures(data)
        assert [s[b"a"] for s in sigs] == [b"rsa-sha256", b"ed25519-sha256"]
        for sig in sigs:
            assert sig[b"c"] == b"relaxed/relaxed" and sig[b"d"] == b"shop.test"
            signed = {h.strip().decode() for h in sig[b"h"].split(b":")}
            assert signed == SIGNED, signed
        assert verified(data, lookup) == [True, True]
        assert verified(changed_body(data), lookup) == [False, False]
    assert {"s1._domainkey.shop.test", "s1-ed25519._domainkey.shop.test"} <= set(server.asked)

    verdicts = opendkim_verdicts(tmp_path / "opendkim", records,
                                 messages[:5] + [changed_body(m) for m in messages[:5]])
    assert verdicts[:5] == [(0, "")] * 5, verdicts
    for code, text in verdicts[5:]:
        assert code != 0 and "bad signature" in text.lower(), (code, text)


def test_a_relay_that_signs_itself_and_a_domain_without_keys_send_unsigned(
        project: Any, zone: tuple[Zone, int]) -> None:
    server, port = zone
    records, toml = keygen(project, "shop.test", "s1")
    server.records.update(records)
    project.relay_extra = "dkim = false"      # [relays.sink]: the provider signs itself
    project.extra_toml = (f'[relays.signing]\nkind = "smtp"\nhost = "127.0.0.1"\n'
                          f'port = {project.sink.port}\nsecurity = "none"\n\n{toml}')
    project.write_config()
    campaign(project, "selfsign", 10, "Negozio <news@shop.test>")            # sink: dkim = false
    campaign(project, "nokey", 10, "Altro <news@other.test>", relay="signing")
    campaign(project, "control", 10, "Negozio <news@shop.test>", relay="signing")
    project.workers(2)
    for name in ("selfsign", "nokey", "control"):
        project.cli("launch", name)
    for name in ("selfsign", "nokey", "control"):
        assert project.wait_status(name)["counts"]["sent"] == 10, name
    for name in ("selfsign", "nokey"):
        got = caught(project, name)
        assert len(got) == 10 and not any(b"DKIM-Signature" in m for m in got), name
    lookup = txt_lookup(port)
    assert [verified(m, lookup) for m in caught(project, "control")] == [[True]] * 10


def test_in_a_pool_the_relay_that_takes_the_message_decides(project: Any,
                                                          zone: tuple[Zone, int]) -> None:
    """Each pool's first relay cannot be reached, so every message fails over: signed when
    the relay that takes it signs with our key, unsigned when it signs itself, whatever the
    relay tried first wanted."""
    server, port = zone
    records, toml = keygen(project, "shop.test", "s1")
    server.records.update(records)

    def relay(name: str, relay_port: int, dkim: bool) -> str:
        return (f'[relays.{name}]\nkind = "smtp"\nhost = "127.0.0.1"\nport = {relay_port}\n'
                f'security = "none"\ntimeout_s = 2\ndkim = {str(dkim).lower()}\n\n')
    closed = free_port()                      # nothing listens there
    project.extra_toml = (
        relay("gone", closed, True) + relay("gone_self", closed, False)
        + relay("self", project.sink.port, False)
        + '[pools.tosigning]\nstrategy = "failover"\nrelays = ["gone_self", "sink"]\n\n'
        + '[pools.toself]\nstrategy = "failover"\nrelays = ["gone", "self"]\n\n'
        + '[breaker]\nfailures = 1000\ncooldown_s = 300\n\n' + toml)
    project.write_config()
    campaign(project, "tosigning", 5, "Negozio <news@shop.test>", relay="tosigning")
    campaign(project, "toself", 5, "Negozio <news@shop.test>", relay="toself")
    project.workers(1)
    for name in ("tosigning", "toself"):
        project.cli("launch", name)
    for name in ("tosigning", "toself"):
        assert project.wait_status(name)["counts"]["sent"] == 5, name
    lookup = txt_lookup(port)
    assert [verified(m, lookup) for m in caught(project, "tosigning")] == [[True]] * 5
    got = caught(project, "toself")
    assert len(got) == 5 and not any(b"DKIM-Signature" in m for m in got)
    log = (project.root / "workers-0.log").read_text()
    for first in ("gone_self", "gone"):      # every message was tried there first
        assert log.count(f"relay {first} failed; trying the pool's next relay") == 5, first


def test_a_gateway_message_is_signed_as_the_erp_wrote_it(project: Any, zone: tuple[Zone, int],
                                                         tmp_path: Path) -> None:
    from tests.gateway_helpers import add_user, gateway_toml, start_gateway
    from tests.test_gateway import invoice

    server, port = zone
    records, toml = keygen(project, "bottega.example.it", "erp")
    server.records.update(records)
    project.bounces = {"domain": "bounces.bottega.example.it"}
    project.extra_toml = gateway_toml() + "\n" + toml
    project.write_config()
    add_user(project, "erp", "--from-domain", "bottega.example.it", "--stream", "invoices")
    gateway = start_gateway(project)
    try:
        project.workers(1)
        written = invoice(["anna@clienti.example.com"]).as_bytes(policy=SMTP)
        with gateway.login() as smtp:
            assert smtp.sendmail("fatture@bottega.example.it", ["anna@clienti.example.com"],
                                 written) == {}
        assert project.sink.wait_for(1, timeout_s=60)
    finally:
        gateway.stop()
    data = project.sink.received[0].data
    sig, = signatures(data)
    signed = {h.strip().decode() for h in sig[b"h"].split(b":")}
    assert signed == {"from", "to", "subject", "date", "message-id", "mime-version",
                      "content-type", "x-campaigns-delivery"}
    assert data.endswith(written.split(b"\r\n\r\n", 1)[1])       # the ERP's body, untouched
    assert verified(data, txt_lookup(port)) == [True]
    assert verified(changed_body(data), txt_lookup(port)) == [False]
    assert opendkim_verdicts(tmp_path / "opendkim", records, [data]) == [(0, "")]


def test_dkim_tables_and_relay_keys_are_checked_at_load(project: Any, tmp_path: Path) -> None:
    config = tmp_path / "check.toml"
    env = dict(project.env, CAMPAIGNS_CONFIG=str(config))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n")
    cases = {
        '[dkim."shop.test"]\nselector = "s1"\nkey_file = "missing.pem"\n':
            ('[dkim."shop.test"] key_file', "no such file", "campaigns dkim keygen"),
        f'[dkim."shop.test"]\nselector = "s1"\nkey_file = "{garbage}"\n':
            ('[dkim."shop.test"] key_file', "not an RSA private key"),
        '[dkim."shop.test"]\nkey_file = "x.pem"\n': ('[dkim."shop.test"]', "selector must be given"),
        '[dkim."shop.test"]\nselector = "s1"\nkey_file = "x.pem"\nalgo = "rsa"\n':
            ('[dkim."shop.test"]', "unknown key(s) algo"),
        '[dkim."news@shop.test"]\nselector = "s1"\nkey_file = "x.pem"\n':
            ("the table's name must be the From domain",),
        f'[dkim."shop.test"]\nselector = "bad selector"\nkey_file = "{garbage}"\n':
            ("selector must be a DNS label",),
        '[relays.x]\nkind = "console"\ndkim = "no"\n': ("[relays.x]", "dkim must be true or false"),
    }
    for toml, expected in cases.items():
        config.write_text(toml)
        with pytest.raises(ConfigError) as err:
            load_settings(env)
        message = str(err.value)
        assert message.startswith(str(config)), message
        for part in expected:
            assert part in message, (toml, message)
    # the same check, as a person sees it from any command
    config.write_text('[dkim."shop.test"]\nselector = "s1"\nkey_file = "missing.pem"\n')
    shown = subprocess.run([sys.executable, "-m", "workers.cli", "relays", "list"], env=env,
                           capture_output=True, text=True, timeout=60, cwd=project.root)
    assert shown.returncode == 1 and "no such file" in shown.stderr and "Traceback" not in shown.stderr


def test_openssl_makes_dkimpy_s_own_signature(project: Any) -> None:
    """The RSA operation handed to OpenSSL (campaigns.content.dkim) gives, byte for byte,
    the signature of dkimpy's pure-Python code."""
    import hashlib

    from dkim import crypto

    from campaigns.content import dkim as ours
    keygen(project, "shop.test", "s1")
    pem = (project.root / "data" / "dkim" / "shop.test.s1.pem").read_bytes()
    key = crypto.parse_pem_private_key(pem)
    assert ours.openssl() and dkim.RSASSA_PKCS1_v1_5_sign is not crypto.RSASSA_PKCS1_v1_5_sign
    for text in (b"", b"x", b"a message" * 100):
        digest = dkim.HashThrough(hashlib.sha256(text))
        assert dkim.RSASSA_PKCS1_v1_5_sign(digest, key) == bytes(
            crypto.RSASSA_PKCS1_v1_5_sign(digest, key))
