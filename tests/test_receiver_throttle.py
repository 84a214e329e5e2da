"""Issue 11 item 1: throttle state belongs to the receiver that said it; greylisting and a
per-mailbox 421 defer one recipient; every recipient ends in bounded time ([sending]
max_defer_s); `rates reset` clears a throttle. Real workers, real Redis, a scripted SMTP
sink that greylists and 421s per mailbox."""
from __future__ import annotations

import json
import time

from campaigns.cli.sink import Rule
from tests.helpers import ledger, make_campaign


def rates_json(project) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {r["target"]: r for r in json.loads(project.cli("rates", "show", "--json").stdout)}


def test_greylisting_and_a_per_mailbox_421_do_not_slow_the_relay_or_the_domain(project):
    project.sink.rules += [
        Rule(r"^grey@", 451, "4.7.1 <grey@example.test>: Recipient address rejected: "
                             "Greylisted, see http://postgrey.schweikert.ch/", times=2),
        # the relay reconnects and tries again up to 3 times within one send: 3 × 421 reach
        # the send path as one deferral, the 4th try is accepted
        Rule(r"^busy@", 421, "4.2.1 <busy@example.test>: Mailbox temporarily unavailable",
             times=3)]
    rows = [("grey@example.test", "G", "x"), ("busy@example.test", "B", "y")]
    rows += [(f"o{i}@example.test", "O", "z") for i in range(30)]
    make_campaign(project, "grey", rows=rows)
    project.workers(2)
    project.cli("launch", "grey")
    snap = project.wait_status("grey", timeout_s=60)
    assert snap["status"] == "finished" and snap["counts"]["sent"] == 32, snap
    book = ledger(project, "grey")
    assert book["grey@example.test"] == ("sent", 3)      # two greylistings: attempts counted
    assert project.sink.attempts("grey@example.test") == 3
    assert book["busy@example.test"][0] == "sent"
    assert project.sink.attempts("busy@example.test") == 4
    rows_now = rates_json(project)
    assert rows_now["relay:sink"]["why_lower"] is None, rows_now["relay:sink"]
    assert rows_now["relay:sink"]["effective_per_s"] is None     # still not limited
    assert "domain:example.test" not in rows_now, "one mailbox throttled the whole domain"


def test_deferred_past_max_defer_s_is_expired_and_a_receiver_throttle_is_its_own(project):
    project.sending = {"max_defer_s": 3, "max_attempts": 50}
    project.write_config()
    project.sink.rules += [
        Rule(r"^never@", 451, "4.7.1 greylisting in action, please come back later"),
        Rule(r"@slow\.test$", 451, "4.7.1 Rate limited, try again later")]
    rows = [("never@example.test", "N", "x"), ("stuck@slow.test", "S", "y")]
    rows += [(f"o{i}@example.test", "O", "z") for i in range(10)]
    make_campaign(project, "old", rows=rows)
    project.workers(1)
    project.cli("launch", "old")
    seen = None
    deadline = time.monotonic() + 20
    while seen is None and time.monotonic() < deadline:
        row = rates_json(project).get("domain:slow.test")
        seen = row if row and row["why_lower"] else None
    assert seen is not None, "the receiver that said 'rate limited' was not slowed down"
    assert "451 4.7.1 Rate limited" in seen["why_lower"]
    snap = project.wait_status("old", timeout_s=60)
    assert snap["status"] == "finished", snap
    assert snap["counts"]["sent"] == 10 and snap["counts"]["expired"] == 2, snap
    book = ledger(project, "old")
    assert book["never@example.test"][0] == "expired" and book["never@example.test"][1] > 1
    assert book["stuck@slow.test"][0] == "expired"
    assert project.sink.attempts("stuck@slow.test") > 1
    rows_now = rates_json(project)
    assert rows_now["relay:sink"]["why_lower"] is None         # our relay never said so
    assert rows_now["domain:slow.test"]["why_lower"]
    out = project.cli("rates", "reset", "domain:slow.test").stdout
    assert "throttle cleared" in out
    assert "domain:slow.test" not in rates_json(project)
    assert "not throttled" in project.cli("rates", "reset", "domain:slow.test").stdout


def test_the_relay_is_throttled_only_when_it_said_so(project):
    import redis

    from campaigns.delivery.pacing import Pacer
    pacer = Pacer(project.ctx.settings, project.ctx.db, redis.Redis.from_url(project.redis_url))
    cases = {
        "451 4.7.1 Rate limited, try again later": "domain:example.test",
        "421 4.7.0 [TSS04] Messages temporarily deferred due to unexpected volume":
            "domain:example.test",
        "421 4.7.0 mx.test Error: too many connections from 127.0.0.1": "relay:sink",
        "450 4.7.1 Error: too much mail from 127.0.0.1": "relay:sink",
        "421 4.7.0 Too many messages from your IP, slow down": "relay:sink",
    }
    for reply, target in cases.items():
        assert pacer.throttle_target("sink", "a@Example.TEST", reply) == target, reply
    assert pacer.throttle_target("sink", "a@gmail.com", "451 4.7.1 Rate limited") == \
        "domain:google"


class MxServer:
    """A DNS server on 127.0.0.1 (UDP, a thread) that answers MX queries from a table, as a
    company's resolver would; NXDOMAIN for any other name. Real dnspython asks it."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        import socket
        import threading
        self.table = {k.lower(): v for k, v in table.items()}
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rrset
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text().rstrip(".").lower()
            self.queries.append(name)
            reply = dns.message.make_response(query)
            hosts = self.table.get(name)
            if hosts is None:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            else:
                reply.answer.append(dns.rrset.from_text_list(
                    name + ".", 300, "IN", "MX", [f"{10 * (i + 1)} {h}." for i, h in enumerate(hosts)]))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()


def test_a_throttle_belongs_to_the_mx_host_every_domain_it_receives_for_shares(project):
    """Issue 11 item 1, "or its MX host when known": with `[rates] mx_lookup`, two company
    domains hosted on one MX are one receiver; a third on another MX is not slowed down."""
    import redis

    from campaigns.delivery.pacing import Pacer
    dns_server = MxServer({"a.test": ["mx1.shared.test", "mx2.shared.test"],
                           "b.test": ["MX1.Shared.Test"], "c.test": ["mx.other.test"]})
    try:
        project.extra_toml = (f'[rates]\nmx_lookup = true\nquiet_period_s = 3\n'
                              f'mx_nameservers = ["127.0.0.1:{dns_server.port}"]\n')
        project.write_config()
        pacer = Pacer(project.ctx.settings, project.ctx.db, redis.Redis.from_url(project.redis_url))
        reply = "451 4.7.1 Rate limited, try again later"
        assert pacer.throttle_target("sink", "x@a.test", reply) == "domain:mx1.shared.test"
        assert pacer.throttle_target("sink", "y@B.test", reply) == "domain:mx1.shared.test"
        assert pacer.throttle_target("sink", "z@c.test", reply) == "domain:mx.other.test"
        assert pacer.throttle_target("sink", "w@nowhere.test", reply) == "domain:nowhere.test"
        assert dns_server.queries.count("a.test") == 1          # cached

        project.sink.rules += [Rule(r"@a\.test$", 451, "4.7.1 Rate limited, try again later",
                                    times=2)]
        rows = [("first@a.test", "A", "x")]
        rows += [(f"b{i}@b.test", "B", "y") for i in range(3)]
        rows += [(f"c{i}@c.test", "C", "z") for i in range(3)]
        make_campaign(project, "mx", rows=rows)
        project.workers(1)
        project.cli("launch", "mx")
        seen, deadline = None, time.monotonic() + 30
        while seen is None and time.monotonic() < deadline:    # a.test's reply, its MX's
            row = rates_json(project).get("domain:mx1.shared.test")
            seen = row if row and row["why_lower"] else None
            time.sleep(0.1)
        assert seen is not None and "451 4.7.1 Rate limited" in seen["why_lower"]
        snap = project.wait_status("mx", timeout_s=90)
        assert snap["status"] == "finished" and snap["counts"]["sent"] == 7, snap
        shown = rates_json(project)
        assert "domain:a.test" not in shown and "domain:b.test" not in shown
        assert "domain:mx.other.test" not in shown and "domain:c.test" not in shown
        assert shown["relay:sink"]["why_lower"] is None
    finally:
        dns_server.close()
