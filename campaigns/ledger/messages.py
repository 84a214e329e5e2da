"""Transactional messages in the ledger: each one a delivery (origin `api`) of its stream's
campaign (`tx:NAME`, created on first use, always sending, never finished), its content in
`messages`, its files in `message_attachments` (one copy per submission), and the caller's
`Idempotency-Key` decided in the database in the same transaction: a key seen with the same
body answers the first answer and adds nothing; concurrent duplicates wait for the first
one's commit (PostgreSQL's unique index, SQLite's single writer) and then read its answer."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from campaigns.db import Database, as_utc, insert_for
from campaigns.errors import NotFound, StateError
from campaigns.ledger import events
from campaigns.ledger.suppressions import blocking_scopes
from campaigns.models import (Campaign, CampaignStatus, Delivery, DeliveryStatus,
                              IdempotencyKey, Message, MessageAttachment, Priority,
                              Suppression, utcnow)

#: an Idempotency-Key answers its first answer for this long
IDEMPOTENCY_S = 24 * 3600
#: statuses in which a message may still be sent (its files are kept)
HOLDING = ("queued", "deferred", "sending", "in_doubt")
_TX = Priority.TRANSACTIONAL.value


@dataclass
class NewMessage:
    """One message to one recipient, checked by the caller (addresses normalised)."""
    to: str
    from_addr: str
    stream: str
    reply_to: str | None = None
    relay: str | None = None
    template: str | None = None
    data: dict[str, Any] | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    raw: bytes | None = None
    ref: str | None = None
    attachments: Sequence[tuple[str, str, bytes]] = ()   # (filename, content type, bytes)
    #: `api` (POST /messages) or `smtp` (the gateway: its one attachment is the original
    #: message, sent as written)
    origin: str = "api"


@dataclass
class Submitted:
    response: dict[str, Any]
    queued: list[int] = field(default_factory=list)      # delivery ids to publish
    replayed: bool = False                                # the key's first answer


def campaign_name(stream: str) -> str:
    return f"tx:{stream}"


def stream_campaign(db: Database, stream: str) -> int:
    """The id of the stream's campaign, made on first use (concurrent first uses make one)."""
    name = campaign_name(stream)
    with db.session() as s:
        found = s.scalars(select(Campaign.id).where(Campaign.stream == stream)).first()
        if found is not None:
            return int(found)
        now = utcnow()
        s.execute(insert_for(db.dialect)(Campaign).values(
            name=name, stream=stream, priority=_TX, status=CampaignStatus.SENDING.value,
            from_addr="", created_at=now, launched_at=now,
            status_reason="a stream of transactional messages: always open")
            .on_conflict_do_nothing())
    with db.session() as s:
        found = s.scalars(select(Campaign.id).where(Campaign.stream == stream)).first()
    if found is None:
        raise StateError(f"a campaign named '{name}' exists and is not the stream '{stream}'")
    return int(found)


def submit(db: Database, items: Sequence[NewMessage], *, owner: str,
           idempotency: tuple[str, str] | None = None,
           wants: Callable[[str], bool] = lambda _type: False) -> Submitted:
    """Store the messages (one delivery each, `queued`, or `suppressed` with the reason when
    a suppression stops the stream) and, with `idempotency` (key, hash of the body), the
    answer under the key: all in one transaction, so an answer given is durable. The same
    key and body again: the first answer, nothing new. The same key with another body:
    StateError. `wants(event type)`: the caller's callbacks want that event."""
    stream = items[0].stream
    campaign_id = stream_campaign(db, stream)
    with db.session() as s:
        if idempotency is not None:
            first = _claim_key(db, s, owner, *idempotency)
            if first is not None:
                return Submitted(first, replayed=True)
        answer, queued = _store(s, campaign_id, items, owner, wants)
        if idempotency is not None:
            s.execute(update(IdempotencyKey).where(
                IdempotencyKey.owner == owner, IdempotencyKey.key == idempotency[0])
                .values(response=answer))
    return Submitted(answer, queued)


def _claim_key(db: Database, s: Session, owner: str, key: str,
               body_hash: str) -> dict[str, Any] | None:
    """Take the key for this request (None), or return the answer of the request that took
    it first; StateError when that one had another body."""
    now = utcnow()
    s.execute(delete(IdempotencyKey).where(
        IdempotencyKey.owner == owner, IdempotencyKey.key == key,
        IdempotencyKey.created_at < now - timedelta(seconds=IDEMPOTENCY_S)))
    taken = s.execute(insert_for(db.dialect)(IdempotencyKey).values(
        owner=owner, key=key, body_hash=body_hash, created_at=now)
        .on_conflict_do_nothing(index_elements=["owner", "key"])
        .returning(IdempotencyKey.id)).first()
    if taken is not None:
        return None
    first = s.execute(select(IdempotencyKey.body_hash, IdempotencyKey.response).where(
        IdempotencyKey.owner == owner, IdempotencyKey.key == key)).one()
    if first.body_hash != body_hash:
        raise StateError(f"Idempotency-Key '{key}' was used within 24 h for a request with "
                         "another body; use a new key for a new message")
    return dict(first.response or {})


def _store(s: Session, campaign_id: int, items: Sequence[NewMessage], owner: str,
           wants: Callable[[str], bool]) -> tuple[dict[str, Any], list[int]]:
    now = utcnow()
    answer: list[dict[str, Any]] = []
    queued: list[int] = []
    holder: int | None = None
    for item in items:
        stop = _suppression(s, item.to, item.stream)
        status = DeliveryStatus.SUPPRESSED.value if stop else DeliveryStatus.QUEUED.value
        row = Delivery(campaign_id=campaign_id, address=item.to, status=status, attempts=0,
                       updated_at=now, origin=item.origin,
                       reply_text=stop["reason"] if stop else None)
        s.add(row)
        s.flush()
        if item.attachments and holder is None:
            holder = row.id
            for filename, content_type, content in item.attachments:
                s.add(MessageAttachment(delivery_id=holder, filename=filename,
                                        content_type=content_type, content=content,
                                        size=len(content)))
        s.add(Message(delivery_id=row.id, stream=item.stream, ref=item.ref, owner=owner,
                      from_addr=item.from_addr, reply_to=item.reply_to, relay=item.relay,
                      template=item.template, data=item.data, subject=item.subject,
                      html=item.html, text=item.text, raw=item.raw, created_at=now,
                      attachments_from=holder if item.attachments else None))
        kind = "suppressed" if stop else "queued"
        events.emit(s, delivery_id=row.id, campaign_id=campaign_id, type=kind,
                    callback=wants(kind), reason=stop["source"] if stop else None,
                    detail=stop["reason"] if stop else None, at=now)
        entry: dict[str, Any] = {"id": row.id, "to": item.to, "status": status}
        if stop:
            entry["reason"] = stop["reason"]
        else:
            queued.append(row.id)
        answer.append(entry)
    return {"messages": answer}, queued


def suppression_for(db: Database, address: str, stream: str) -> dict[str, Any] | None:
    """The suppression that stops a message of `stream` to `address` ({source, reason}:
    scope, source and date in words), None when none does. A read."""
    with db.session() as s:
        return _suppression(s, address, stream)


def _suppression(s: Session, address: str, stream: str) -> dict[str, Any] | None:
    """The suppression that stops a message of `stream` to `address`, as the caller is told
    it (scope, source, date, reason), None when none does."""
    found = s.execute(select(Suppression.scope, Suppression.source, Suppression.reason,
                             Suppression.created_at)
                      .where(Suppression.address == address,
                             Suppression.scope.in_(blocking_scopes(_TX, None, stream)))
                      .order_by(Suppression.id).limit(1)).first()
    if found is None:
        return None
    when = as_utc(found.created_at)
    return {"source": found.source, "reason": (
        f"suppressed ({found.scope}) since {when:%Y-%m-%d}: {found.source}"
        + (f", {found.reason}" if found.reason and found.reason != found.source else ""))}


@dataclass
class Content:
    """What the send path needs of a message."""
    stream: str
    from_addr: str
    reply_to: str | None
    relay: str | None
    template: str | None
    data: dict[str, Any]
    subject: str | None
    html: str | None
    text: str | None
    raw: bytes | None
    attachments_from: int | None


def content(db: Database, delivery_id: int) -> Content | None:
    """The message of a delivery of origin api/smtp (None when it has none)."""
    with db.session() as s:
        m = s.get(Message, delivery_id)
        if m is None:
            return None
        return Content(m.stream, m.from_addr, m.reply_to, m.relay, m.template,
                       dict(m.data or {}), m.subject, m.html, m.text, m.raw,
                       m.attachments_from)


def attachments(db: Database, holder: int) -> list[tuple[str, str, bytes]]:
    with db.session() as s:
        rows = s.execute(select(MessageAttachment.filename, MessageAttachment.content_type,
                                MessageAttachment.content)
                         .where(MessageAttachment.delivery_id == holder)
                         .order_by(MessageAttachment.id)).all()
    return [(f, t, bytes(c)) for f, t, c in rows]


def sweep(db: Database, now: datetime) -> dict[str, int]:
    """Files of messages that are all final removed; idempotency keys older than 24 h
    forgotten. The upkeep runs it."""
    still = (select(Message.attachments_from)
             .join(Delivery, Delivery.id == Message.delivery_id)
             .where(Message.attachments_from.is_not(None), Delivery.status.in_(HOLDING)))
    with db.session() as s:
        files = s.execute(delete(MessageAttachment).where(
            MessageAttachment.delivery_id.not_in(still))).rowcount
        keys = s.execute(delete(IdempotencyKey).where(
            IdempotencyKey.created_at < now - timedelta(seconds=IDEMPOTENCY_S))).rowcount
    return {"attachments_removed": int(files or 0), "idempotency_keys_forgotten": int(keys or 0)}


def get(db: Database, delivery_id: int) -> dict[str, Any]:
    """A message as GET /messages/{id} and `messages show` tell it; NotFound otherwise."""
    with db.session() as s:
        row = s.execute(select(Delivery, Message).join(
            Message, Message.delivery_id == Delivery.id)
            .where(Delivery.id == delivery_id)).first()
        if row is None:
            raise NotFound(f"no message with id {delivery_id}")
        d, m = row
        files = s.execute(select(MessageAttachment.filename, MessageAttachment.size)
                          .where(MessageAttachment.delivery_id == m.attachments_from)
                          ).all() if m.attachments_from else []
        view = _view(d, m)
    view["attachments"] = [{"filename": f, "size": n} for f, n in files]
    view["events"] = events.timeline(db, delivery_id)
    return view


def _view(d: Delivery, m: Message) -> dict[str, Any]:
    def when(v: datetime | None) -> str | None:
        return as_utc(v).isoformat() if v else None
    return {"id": d.id, "to": d.address, "status": d.status, "stream": m.stream,
            "ref": m.ref, "from": m.from_addr, "template": m.template,
            "subject": m.subject, "attempts": d.attempts, "reply_code": d.reply_code,
            "enhanced_status": d.enhanced_status, "reply_text": d.reply_text,
            "bounce_category": d.bounce_category, "bounce_reason": d.bounce_reason,
            "relay": d.relay, "provider_message_id": d.provider_message_id,
            "message_id": d.message_id, "created_at": when(m.created_at),
            "sent_at": when(d.sent_at), "updated_at": when(d.updated_at)}


def listing(db: Database, *, stream: str | None = None, status: str | None = None,
            since: datetime | None = None, ref: str | None = None, after_id: int = 0,
            limit: int = 100) -> list[dict[str, Any]]:
    """Messages, oldest first after `after_id` (the cursor), filtered."""
    query = (select(Delivery, Message).join(Message, Message.delivery_id == Delivery.id)
             .where(Delivery.id > after_id).order_by(Delivery.id).limit(limit))
    if stream:
        query = query.where(Message.stream == stream)
    if status:
        query = query.where(Delivery.status == status)
    if since is not None:
        query = query.where(Message.created_at >= since)
    if ref:
        query = query.where(Message.ref == ref)
    with db.session() as s:
        return [_view(d, m) for d, m in s.execute(query).all()]
