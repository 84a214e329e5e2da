"""What every provider module shares: the request it verifies, the event it returns, the two
ways a request fails, and the one step that writes events to the ledger.

A provider module (ses, sendgrid, mailgun, postmark) has two calls:

- `verify(request, config)`: raise `WebhookRejected` (401: no credentials or signature,
  403: wrong ones, stale, replayed, not configured) unless the request is the provider's
  own; it changes nothing.
- `events(body)`: the verified body as `ProviderEvent`s, or `MalformedPayload` (400) naming
  the field that is missing or of the wrong kind.

`record_events` then feeds each event to `campaigns.intake.apply`, which owns the
suppression policy: webhooks only translate, they never decide."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from campaigns.bounces import BounceReport, Classification, classify_reply
from campaigns.bounces.model import BounceCategory
from campaigns.bounces.status import find_reply_code, find_status
from campaigns.errors import CampaignsError

if TYPE_CHECKING:
    from campaigns.db import Database
    from campaigns.intake import Applied
    from campaigns.settings import Settings
    from campaigns.intake.webhooks.config import WebhookConfig

log = logging.getLogger("campaigns.intake.webhooks")

#: BounceEvent.report_key is 100 characters
_KEY_MAX = 100


class WebhookError(CampaignsError):
    """A webhook request we do not act on; `status` is the HTTP answer."""

    status = 400

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class WebhookRejected(WebhookError):
    """Not verifiably from the provider: 401 (no credentials or signature) or 403 (wrong,
    stale, replayed, or the provider is not configured). Nothing was changed."""

    status = 403


class WebhookUnavailable(WebhookError):
    """We could not check the request now (a signing certificate could not be fetched):
    503, so the provider tries again later."""

    status = 503


class MalformedPayload(WebhookError):
    """A verified body that does not have the documented shape: 400, naming the field."""

    status = 400

    def __init__(self, field_path: str, expected: str) -> None:
        super().__init__(f"field '{field_path}': expected {expected}")
        self.field = field_path


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of an HTTP request a provider signs: the raw body (never re-serialised:
    signatures cover the bytes), the headers with lower-case names, and when it arrived
    (epoch seconds; the clock for freshness checks)."""

    body: bytes
    headers: Mapping[str, str]
    received_at: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class ProviderEvent:
    """One recipient's outcome as a provider reported it. `event_id` is unique per event at
    the provider (the idempotency key); `raw_type` is the provider's own name for it."""

    provider_message_id: str | None
    recipient: str | None
    verdict: BounceReport
    event_id: str
    raw_type: str


@dataclass(frozen=True)
class Provider:
    """One provider's endpoint, as the ASGI app drives it: `verify`, then `acknowledge`,
    then `events`, then `record_events`."""

    name: str
    #: raise WebhookRejected (401/403) or WebhookUnavailable (503) unless the request is
    #: the provider's own; never changes anything
    verify: Callable[[WebhookRequest, WebhookConfig], None]
    #: the events in a verified body; MalformedPayload (400) naming the field otherwise
    events: Callable[[bytes], list[ProviderEvent]]
    #: what a verified body asks besides events (SNS: confirm a subscription); may raise
    #: WebhookUnavailable
    acknowledge: Callable[[bytes, WebhookConfig], object] | None = None


# ------------------------------------------------------------------------ reading bodies
def load_json(body: bytes, what: str) -> Any:
    """The JSON document in `body`; MalformedPayload (400) for anything that does not decode,
    including nesting deeper than the parser's recursion limit (RecursionError)."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayload(what, "a JSON document") from None


def get(obj: Any, path: str, kind: type | tuple[type, ...], *, at: str = "",
        required: bool = True) -> Any:
    """`obj[a][b]…` for `path` "a.b…", checked to be `kind`; MalformedPayload naming
    `at` + path when it is missing (and required) or of another kind."""
    value = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            break
    where = f"{at}.{path}" if at else path
    if value is None:
        if required:
            raise MalformedPayload(where, _kind_name(kind))
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise MalformedPayload(where, _kind_name(kind))
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a number", float: "a number", list: "a list",
             dict: "an object", bool: "true or false"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _kinds(kind)))


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison (no early exit an attacker could time)."""
    return hmac.compare_digest(given.encode(), expected.encode())


# ------------------------------------------------------------------------ verdicts
def report(verdict: Classification, recipient: str | None, *, diagnostic: str | None = None,
           status: str | None = None, reply_code: int | None = None, final: bool = True,
           feedback_type: str | None = None) -> BounceReport:
    """A BounceReport from a verdict and the provider's details (diagnostic on one line)."""
    text = " ".join((diagnostic or "").split())[:2000] or None
    return BounceReport(verdict.category, verdict.permanent and final, verdict.reason,
                        recipient=recipient, status=status or find_status(text),
                        reply_code=reply_code or find_reply_code(text), diagnostic=text,
                        feedback_type=feedback_type, final=final)


def refine(base: Classification, diagnostic: str | None, *, permanent: bool | None,
           code: int | None = None, status: str | None = None) -> Classification:
    """The provider's verdict `base`, made finer by the receiver's own words when they say
    more, without contradicting the provider on permanence: a failure the provider calls
    permanent never becomes a soft bounce, one it calls temporary never a hard one (then it
    is soft with the finer reason). Words that say nothing (unknown) leave `base`."""
    text = (diagnostic or "").strip()
    if text.lower().startswith("smtp;"):
        text = text[5:].strip()       # DSN Diagnostic-Code type prefix ("smtp; 550 5.1.1 …")
    if not text and not status:
        return base
    said = classify_reply(code or find_reply_code(text) or 0, text, status or find_status(text))
    if said.category in (BounceCategory.UNKNOWN, BounceCategory.DELIVERED):
        return base
    if permanent is True:
        if said.category in (BounceCategory.SOFT, BounceCategory.THROTTLE,
                             BounceCategory.EXPIRED):
            return base
        return Classification(said.category, True, said.reason)
    if permanent is False:
        if said.category is BounceCategory.HARD:
            return Classification(BounceCategory.SOFT, False, said.reason)
        return Classification(said.category, False, said.reason)
    return said


def event_key(provider: str, event_id: str) -> str:
    """The intake's idempotency key; a hash when the provider's id would not fit."""
    key = f"webhook:{provider}:{event_id}"
    if len(key) <= _KEY_MAX:
        return key
    return f"webhook:{provider}:" + hashlib.sha256(event_id.encode()).hexdigest()[:64]


# ------------------------------------------------------------------------ the ledger
def record_events(db: Database, settings: Settings, provider: str,
                  events: list[ProviderEvent]) -> list[Applied]:
    """Apply each event through the intake (idempotent by its key). An event whose provider
    message id matches none of our deliveries is recorded as unmatched and changes nothing
    else. Blocking: the ASGI app runs it in a worker thread."""
    # imported here so that parsing a provider's payload needs no database layer
    from campaigns.intake import apply
    out = []
    for event in events:
        delivery_id = find_delivery(db, event.provider_message_id, event.recipient)
        out.append(apply(db, settings, event.verdict, source="webhook", delivery_id=delivery_id,
                         key=event_key(provider, event.event_id), address=event.recipient,
                         attributed=delivery_id is not None))
    return out


def find_delivery(db: Database, provider_message_id: str | None,
                  recipient: str | None) -> int | None:
    """Our delivery with that provider message id. One message id may cover several
    recipients (a provider that queues one message for many): then the recipient decides."""
    from sqlalchemy import select

    from campaigns.models import Delivery
    if not provider_message_id:
        return None
    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.id, Delivery.address).where(
            Delivery.provider_message_id == provider_message_id).limit(1000)).all()
    if len(rows) == 1:
        return int(rows[0].id)
    wanted = (recipient or "").lower()
    matches = [int(r.id) for r in rows if r.address.lower() == wanted]
    return matches[0] if len(matches) == 1 else None
