"""Event callbacks (campaigns.callbacks): the outbox in the events table POSTed, signed, to a
real HTTP receiver on loopback by real workers; retries, a receiver down then up, the
signature, the backoff, giving up, `campaigns callbacks status` and `retry`."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from sqlalchemy import select

from campaigns import callbacks
from campaigns.ledger import events
from campaigns.ledger.reads import get_campaign
from campaigns.ledger.rows import expand
from campaigns.models import Event
from tests.helpers import free_port, make_campaign

SECRET = "whsec-test-not-shown-0123456789"


def verify(secret: str, header: str, body: bytes, now: float | None = None,
           tolerance_s: int = 300) -> bool:
    """The README's verification snippet (plus `now` for the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(mac.hexdigest(), fields.get("v1", ""))


class Receiver:
    """An HTTP server on 127.0.0.1 that checks each POST's signature; its first `fail_first`
    requests are answered 500."""

    def __init__(self, port: int | None = None, fail_first: int = 0) -> None:
        self.port = port or free_port()
        self.fail_first = fail_first
        self.requests = 0
        self.bad_signatures = 0
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests += 1
                    fail = receiver.requests <= receiver.fail_first
                    if not verify(SECRET, self.headers.get("Campaigns-Signature", ""), body):
                        receiver.bad_signatures += 1
                        fail = True
                    elif not fail:
                        receiver.received.append(json.loads(body))
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def ids(self) -> set[str]:
        with self.lock:
            return {p["id"] for p in self.received}


def configure(project, url: str, **extra: Any) -> None:  # type: ignore[no-untyped-def]
    table = {"url": url, "secret_env": "CB_SECRET", "streams": ["c1"], **extra}
    project.extra_env["CB_SECRET"] = SECRET
    project.extra_toml = "[callbacks]\n" + "\n".join(f"{k} = {json.dumps(v)}"
                                                    for k, v in table.items())
    project.write_config()


def make_events(project, n: int, type: str = "delivered") -> list[int]:  # type: ignore[no-untyped-def]
    """A campaign's n deliveries (expanded, not launched) and one pending event of each."""
    make_campaign(project, "c1", n)
    db = project.ctx.db
    with db.session() as s:
        campaign = get_campaign(s, "c1")
        cid, list_id = campaign.id, campaign.list_id
    expand(db, cid, list_id, 1000)
    from campaigns.models import Delivery
    with db.session() as s:
        ids = s.scalars(select(Delivery.id).where(Delivery.campaign_id == cid)).all()
        for delivery_id in ids:
            events.emit(s, delivery_id=delivery_id, campaign_id=cid, type=type, callback=True,
                        code=250)
    with db.session() as s:
        return list(s.scalars(select(Event.id).order_by(Event.id)).all())


def states(project) -> dict[int, str]:  # type: ignore[no-untyped-def]
    with project.ctx.db.session() as s:
        return dict(s.execute(select(Event.id, Event.callback)).all())  # type: ignore[arg-type]


def wait_all_sent(project, receiver: Receiver, n: int, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(receiver.ids()) >= n and set(states(project).values()) == {"sent"}:
            return True
        time.sleep(0.3)
    return False


def test_receiver_failing_three_times_then_taking_gets_every_event(project):
    receiver = Receiver(fail_first=3).start()
    try:
        configure(project, receiver.url)
        ids = make_events(project, 20)
        project.workers(1)
        assert wait_all_sent(project, receiver, 20, timeout_s=45), (states(project),
                                                                     receiver.requests)
        assert receiver.ids() == {f"ev_{i}" for i in ids}
        assert receiver.bad_signatures == 0
        assert receiver.requests >= 23
        sample = receiver.received[0]
        assert set(sample) == {"id", "type", "message", "delivery", "ref", "stream",
                               "campaign", "recipient", "category", "reason", "code", "at"}
        assert sample["type"] == "delivered" and sample["campaign"] == "c1"
        assert sample["message"] is None and sample["stream"] is None
        assert sample["recipient"].endswith("@example.test") and sample["at"].endswith("Z")
    finally:
        receiver.stop()


def test_receiver_down_for_30_s_loses_nothing(project):
    port = free_port()
    receiver = Receiver(port=port)
    configure(project, receiver.url)
    ids = make_events(project, 10)
    down_since = time.monotonic()
    project.workers(1)
    try:
        deadline = down_since + 20
        while time.monotonic() < deadline:   # tried and failing while it is down
            snap = json.loads(project.cli("callbacks", "status", "--json").stdout)
            if snap["failing"] == 10:
                break
            time.sleep(0.5)
        assert snap["failing"] == 10 and snap["pending"] == 10, snap
        assert "Connect" in snap["last_error"] and SECRET not in json.dumps(snap)
        time.sleep(max(0.0, down_since + 30 - time.monotonic()))
        receiver.start()
        assert wait_all_sent(project, receiver, 10, timeout_s=40), states(project)
        assert receiver.ids() == {f"ev_{i}" for i in ids}
        assert receiver.bad_signatures == 0
    finally:
        receiver.stop()


def test_signature_known_vector_and_verification():
    body = b'{"id":"ev_1","type":"delivered"}'
    header = callbacks.sign("s3cret", 1700000000, body)
    assert header == ("t=1700000000,v1=" + hmac.new(
        b"s3cret", b'1700000000.{"id":"ev_1","type":"delivered"}', hashlib.sha256).hexdigest())
    assert header == "t=1700000000,v1=" + KNOWN_V1
    assert verify("s3cret", header, body, now=1700000100)
    assert not verify("s3cret", header, body + b" ", now=1700000100)
    assert not verify("other", header, body, now=1700000100)
    assert not verify("s3cret", header, body, now=1700000000 + 301)   # older than 5 min
    assert not verify("s3cret", "garbage", body, now=1700000000)


KNOWN_V1 = "d09c674584c4b19d1d451ba560623f9ffc4799b19a74c9b54e19891be7ba0774"


def test_backoff_doubles_from_5_s_to_an_hour_with_jitter():
    assert [callbacks.backoff_s(n, rand=lambda: 0.0) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert callbacks.backoff_s(11, rand=lambda: 0.0) == 3600
    assert callbacks.backoff_s(60, rand=lambda: 0.0) == 3600
    assert callbacks.backoff_s(1, rand=lambda: 1.0) == 6.25
    assert all(5 <= callbacks.backoff_s(1) <= 6.25 for _ in range(100))


def test_given_up_after_max_age_then_retried_and_status_never_shows_the_secret(project):
    receiver = Receiver(fail_first=10**6).start()   # always 500
    try:
        configure(project, receiver.url, max_age_s=1)
        (event_id,) = make_events(project, 1)
        db, cfg = project.ctx.db, project.ctx.settings.callbacks
        assert cfg.max_age_s == 1
        now = time.time()
        with httpx.Client() as client:
            outcomes = [callbacks.deliver(db, cfg, event_id, now + 10 * i, client).status
                        for i in range(callbacks.MIN_TRIES)]
            assert outcomes == ["retry"] * (callbacks.MIN_TRIES - 1) + ["failed"]
            assert callbacks.deliver(db, cfg, event_id, now + 100, client).status == "gone"
        assert states(project) == {event_id: "failed"}
        snap = json.loads(project.cli("callbacks", "status", "--json").stdout)
        assert snap["failed"] == 1 and snap["pending"] == 0
        assert snap["last_error"] == "HTTP 500"
        text = project.cli("callbacks", "status").stdout
        assert "given up: 1" in text and "HTTP 500" in text
        for shown in (text, json.dumps(snap)):
            assert SECRET not in shown and receiver.url not in shown
        assert "1 given-up event pending again" in project.cli("callbacks", "retry").stdout
        assert states(project) == {event_id: "pending"}
        receiver.fail_first = 0
        with httpx.Client() as client:
            assert callbacks.deliver(db, cfg, event_id, time.time(), client).status == "sent"
        assert receiver.ids() == {f"ev_{event_id}"}
        snap = json.loads(project.cli("callbacks", "status", "--json").stdout)
        assert snap["sent"] == 1 and snap["sent_last_hour"] == 1 and snap["failed"] == 0
    finally:
        receiver.stop()


def test_claimed_events_are_hidden_until_the_window_passes_and_counted(project):
    configure(project, "http://127.0.0.1:9/hook")
    ids = make_events(project, 3)
    db = project.ctx.db
    now = datetime.now(timezone.utc)
    assert events.claim_due(db, now, 2, 60) == ids[:2]        # oldest first, limited
    assert events.claim_due(db, now, 10, 60) == ids[2:]
    assert events.claim_due(db, now + timedelta(seconds=30), 10, 60) == []
    assert events.claim_due(db, now + timedelta(seconds=61), 10, 60) == ids
    published: list[int] = []
    later = (now + timedelta(seconds=200)).timestamp()
    cfg = project.ctx.settings.callbacks
    assert callbacks.publish_due(db, cfg, later, published.extend) == 3 and published == ids
    assert callbacks.publish_due(db, cfg, later + 1, published.extend) == 0
    assert events.retry_at(db, ids[0], 0, now, "HTTP 503")
    assert not events.retry_at(db, ids[0], 0, now, "HTTP 503")   # a racing worker's: stale
    assert events.mark_sent(db, ids[1], now)
    snap = events.outbox_status(db, now + timedelta(seconds=300))
    assert snap["pending"] == 2 and snap["failing"] == 1 and snap["sent"] == 1
    assert snap["last_error"] == "HTTP 503" and snap["oldest_pending_s"] >= 300


def test_an_event_whose_type_is_not_wanted_is_skipped_not_sent(project):
    configure(project, "http://127.0.0.1:9/hook", events=["bounced"])
    (event_id,) = make_events(project, 1, type="delivered")
    with httpx.Client() as client:
        outcome = callbacks.deliver(project.ctx.db, project.ctx.settings.callbacks, event_id,
                                    time.time(), client)
    assert outcome.status == "skipped" and "not in [callbacks] events" in str(outcome.error)
    assert states(project) == {event_id: "skipped"}


def test_a_bulk_campaign_named_in_streams_calls_back_one_delivered_per_recipient(project):
    receiver = Receiver().start()
    try:
        configure(project, receiver.url)            # streams = ["c1"]
        addresses = make_campaign(project, "c1", 30)
        project.workers(2)
        project.cli("launch", "c1")
        assert project.wait_status("c1", timeout_s=60)["counts"]["sent"] == 30
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(receiver.ids()) < 30:
            time.sleep(0.3)
        delivered = [p for p in receiver.received if p["type"] == "delivered"]
        assert sorted(p["recipient"] for p in delivered) == sorted(addresses)
        assert {p["campaign"] for p in delivered} == {"c1"} and receiver.bad_signatures == 0
        assert len({p["id"] for p in delivered}) == 30
    finally:
        receiver.stop()
