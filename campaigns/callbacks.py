"""Event callbacks: the events of the outbox (campaigns.ledger.events, `callback` pending)
POSTed as signed JSON to [callbacks] url. At least once: a 2xx marks an event sent; any other
answer, a timeout or a connection error is tried again with exponential backoff and jitter
(5 s, 10 s, 20 s … at most 1 h) until [callbacks] max_age_s after the event (then given up,
`campaigns callbacks retry` revives it); a receiver dedups by the event's id. An event whose
type left [callbacks] events, or with no url configured, is `skipped` (with the reason), not
sent. No Celery: workers/ publishes `publish_due` every second and runs `deliver` per event."""
from __future__ import annotations

import hashlib
import hmac
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import httpx

from campaigns.db import Database
from campaigns.ledger import events
from campaigns.settings import CallbacksConfig

SIGNATURE_HEADER = "Campaigns-Signature"
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 3600.0
#: a given-up event revived by `campaigns callbacks retry` is tried this often before it is
#: given up again (an event is given up only once past max_age_s *and* tried this often)
MIN_TRIES = 5
#: publishing an event hides it from the next sweeps this long: its task says how it went
VISIBILITY_S = 60.0
BATCH = 500
#: the message id of a delivery that is a transactional message (not a list member's row)
MESSAGE_ORIGINS = ("api", "smtp")


def payload(entry: dict[str, Any]) -> dict[str, Any]:
    """What the receiver is told of one event (`entry`: events.outbox_entry)."""
    at: datetime = entry["at"].astimezone(timezone.utc)
    stream = entry["stream"]
    return {"id": f"ev_{entry['id']}", "type": entry["type"],
            "message": entry["delivery_id"] if entry["origin"] in MESSAGE_ORIGINS else None,
            "delivery": entry["delivery_id"], "ref": entry["ref"], "stream": stream,
            "campaign": None if stream else entry["name"], "recipient": entry["address"],
            "category": entry["category"], "reason": entry["reason"], "code": entry["code"],
            "at": at.isoformat().replace("+00:00", "Z")}


def body_of(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The Campaigns-Signature header: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff_s(tries: int, rand: Callable[[], float] = random.random) -> float:
    """The wait after the `tries`-th failed try: 5 s, 10 s, 20 s … 1 h, plus up to 25 %."""
    base = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(max(tries - 1, 0), 20))
    return base * (1 + 0.25 * rand())


@dataclass(frozen=True)
class Outcome:
    status: str          # sent, retry, failed (given up), skipped, gone (nothing to do)
    error: str | None = None


def _error(exc: Exception, cfg: CallbacksConfig) -> str:
    """A failure in a few words: never the url (it may hold a token), the secret or body."""
    text = f"{type(exc).__name__}: {exc}"
    for hidden in (cfg.url, cfg.secret.reveal() if cfg.secret else None):
        if hidden:
            text = text.replace(hidden, "***")
    return text[:200]


def post(client: httpx.Client, cfg: CallbacksConfig, body: bytes, now: float) -> str | None:
    """POST one signed body; None when the receiver took it (2xx), else the error."""
    assert cfg.url and cfg.secret
    headers = {"Content-Type": "application/json", "User-Agent": "campaigns-callbacks",
               SIGNATURE_HEADER: sign(cfg.secret.reveal(), int(now), body)}
    try:
        response = client.post(cfg.url, content=body, headers=headers, timeout=cfg.timeout_s)
    except httpx.TimeoutException:
        return f"timeout after {cfg.timeout_s:g} s"
    except httpx.HTTPError as exc:
        return _error(exc, cfg)
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def deliver(db: Database, cfg: CallbacksConfig, event_id: int, now: float,
            client: httpx.Client) -> Outcome:
    """Send one event of the outbox (a redelivered task finds it sent: `gone`)."""
    entry = events.outbox_entry(db, event_id)
    if entry is None:
        return Outcome("gone")
    when = datetime.fromtimestamp(now, timezone.utc)
    if not cfg.url or not cfg.secret:
        events.skip(db, event_id, when, "no [callbacks] url")
        return Outcome("skipped", "no [callbacks] url")
    if entry["type"] not in cfg.events:
        reason = f"type {entry['type']!r} not in [callbacks] events"
        events.skip(db, event_id, when, reason)
        return Outcome("skipped", reason)
    error = post(client, cfg, body_of(payload(entry)), now)
    if error is None:
        events.mark_sent(db, event_id, when)
        return Outcome("sent")
    tries = entry["callback_attempts"] + 1
    next_at = when + timedelta(seconds=backoff_s(tries))
    if tries >= MIN_TRIES and next_at > entry["at"] + timedelta(seconds=cfg.max_age_s):
        events.give_up(db, event_id, entry["callback_attempts"], when, error)
        return Outcome("failed", error)
    events.retry_at(db, event_id, entry["callback_attempts"], next_at, error)
    return Outcome("retry", error)


def publish_due(db: Database, cfg: CallbacksConfig, now: float,
                publish: Callable[[Iterable[int]], None], limit: int = BATCH) -> int:
    """Hand due pending events to `publish` (one task each), hidden from the next sweeps
    for VISIBILITY_S (or 3 POST timeouts, when longer); a publish that fails, or a task
    lost with its worker, leaves them to come back after that window."""
    window = max(VISIBILITY_S, 3 * cfg.timeout_s)
    ids = events.claim_due(db, datetime.fromtimestamp(now, timezone.utc), limit, window)
    if ids:
        publish(ids)
    return len(ids)
