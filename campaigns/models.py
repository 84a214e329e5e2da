"""The schema. The `deliveries` table is the ledger: one row per (campaign, recipient)."""
from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary,
                        String, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CampaignStatus(str, enum.Enum):
    DRAFT = "draft"
    SENDING = "sending"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"
    WAITING = "waiting"      # sending, but outside its send window or past a daily cap
    SCHEDULED = "scheduled"  # launches by itself at scheduled_at


class DeliveryStatus(str, enum.Enum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    IN_DOUBT = "in_doubt"
    EXPIRED = "expired"      # deferred past [sending] max_defer_s: given up, final


DELIVERY_STATUSES = [s.value for s in DeliveryStatus]
#: rows a worker may still pick up
PENDING = ("queued", "deferred")
#: rows that still keep a campaign open
OPEN = ("queued", "deferred", "sending")


class Priority(str, enum.Enum):
    """A campaign's priority, which is also its stream (transactional mail goes first)."""
    BULK = "bulk"
    TRANSACTIONAL = "transactional"


class SuppressionScope(str, enum.Enum):
    """What a suppression stops: every message (`all`: a hard bounce, a manual entry by
    default), bulk campaigns (`bulk`: a complaint, an unsubscribe, repeated soft bounces),
    one stream (`stream:NAME`; for now a campaign's priority is its stream) or the campaigns
    of one list (`list:NAME`). STREAM and LIST are prefixes: `SuppressionScope.LIST.of(name)`."""
    ALL = "all"
    BULK = "bulk"
    STREAM = "stream"
    LIST = "list"

    def of(self, name: str) -> str:
        return f"{self.value}:{name}"


class Base(DeclarativeBase):
    pass


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_dir: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ContactList(Base):
    __tablename__ = "lists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ListMember(Base):
    __tablename__ = "list_members"
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)


class Suppression(Base):
    """An address not mailed again in `scope` (SuppressionScope: one address may have several),
    and why: `source` (manual, import, smtp, bounce, complaint, soft-limit, unsubscribe), the
    bounce `category`, and the delivery and bounce report that caused it."""
    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("address", "scope", name="uq_suppression_address_scope"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    scope: Mapped[str] = mapped_column(String(220), default=SuppressionScope.ALL.value,
                                       server_default=SuppressionScope.ALL.value)
    reason: Mapped[str] = mapped_column(Text, default="manual")
    source: Mapped[str] = mapped_column(String(20), default="manual", server_default="manual")
    category: Mapped[str | None] = mapped_column(String(20))
    delivery_id: Mapped[int | None] = mapped_column(Integer)
    bounce_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BounceEvent(Base):
    """One recipient's bounce (or complaint, or delivery notice) as it reached us: from an
    SMTP reply while sending, a returned message (inbound SMTP, IMAP, a file) or a webhook.
    `report_key` makes the intake idempotent: the same report processed twice is one row."""
    __tablename__ = "bounces"
    __table_args__ = (Index("ix_bounce_address_created", "address", "created_at"),
                      Index("ix_bounce_campaign", "campaign_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_key: Mapped[str] = mapped_column(String(100), unique=True)
    source: Mapped[str] = mapped_column(String(20))          # smtp, inbound, imap, file, webhook
    delivery_id: Mapped[int | None] = mapped_column(Integer)
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(320))
    category: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(40))
    permanent: Mapped[bool] = mapped_column(Boolean, default=False)
    final: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str | None] = mapped_column(String(20))    # enhanced status code
    reply_code: Mapped[int | None] = mapped_column(Integer)
    diagnostic: Mapped[str | None] = mapped_column(Text)
    feedback_type: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str | None] = mapped_column(String(40))    # what the intake did with it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Template(Base):
    __tablename__ = "templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    text_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("stream", name="uq_campaigns_stream"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: None for a stream's campaign (`tx:NAME`): its messages carry their own content
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id"))
    template_id: Mapped[int | None] = mapped_column(ForeignKey("templates.id"))
    #: the transactional stream this campaign holds the messages of (never finished)
    stream: Mapped[str | None] = mapped_column(String(100))
    from_addr: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(Text)
    relay: Mapped[str | None] = mapped_column(String(200))
    attachment_column: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(20), default="bulk", server_default="bulk")  # bulk | transactional
    send_window: Mapped[str | None] = mapped_column(Text)     # "mon-fri 09:00-18:00"
    timezone: Mapped[str | None] = mapped_column(String(64))  # the window's zone
    resume_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # when waiting
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # one-off launch
    run_context: Mapped[dict[str, Any] | None] = mapped_column(JSON)   # `run` of a scheduled run
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.DRAFT.value)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the launch wrote every row by then (None: still writing, or never launched)
    expanded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the highest row id the feeder handed to the broker (rows above wait in the ledger)
    fed_until: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        # one row per list member; a stream's messages may reach one address many times
        Index("uq_delivery_campaign_address", "campaign_id", "address", unique=True,
              sqlite_where=text("origin = 'list'"), postgresql_where=text("origin = 'list'")),
        Index("ix_delivery_status_lease", "status", "lease_until"),
        # a campaign's rows by status (counts), and in id order (the feeder)
        Index("ix_delivery_feed", "campaign_id", "status", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    address: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reply_code: Mapped[int | None] = mapped_column(Integer)
    enhanced_status: Mapped[str | None] = mapped_column(String(20))
    reply_text: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    bounce_category: Mapped[str | None] = mapped_column(String(20))   # hard, soft, block, …
    bounce_reason: Mapped[str | None] = mapped_column(String(40))     # userunknown, mailboxfull, …
    relay: Mapped[str | None] = mapped_column(String(200))            # the relay that took it
    provider_message_id: Mapped[str | None] = mapped_column(String(300), index=True)
    #: when the upkeep last re-published the row's task (None: only at launch, `updated_at`)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: when the row was first tried (the maximum deferral age counts from here)
    first_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: `list`: a list member of a campaign; `api`: a message handed over by POST /messages
    #: (its content in `messages`); `smtp`: by the submission gateway
    origin: Mapped[str] = mapped_column(String(10), default="list", server_default="list")


class Schedule(Base):
    """A recurring newsletter: each firing of `cron` (in `timezone`) creates a campaign run
    from the template and list as they are then, and launches it."""
    __tablename__ = "schedules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    template: Mapped[str] = mapped_column(String(200))
    list_name: Mapped[str] = mapped_column(String(200))
    from_addr: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(Text)
    relay: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(20), default="bulk")
    send_window: Mapped[str | None] = mapped_column(Text)
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    data_url: Mapped[str | None] = mapped_column(Text)      # JSON fetched at each run: run.data
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScheduleRun(Base):
    """One firing of a schedule. The unique (schedule, scheduled_for) is what makes a firing
    happen once, whatever number of schedulers saw it due."""
    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "scheduled_for", name="uq_run_firing"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    scheduled_for: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))   # running, launched, skipped, failed
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RateLimit(Base):
    """A send rate set by a person (`campaigns rates set`); TOML holds the defaults."""
    __tablename__ = "rate_limits"
    target: Mapped[str] = mapped_column(String(200), primary_key=True)  # relay:main, domain:google
    rate_per_s: Mapped[float | None] = mapped_column()
    burst: Mapped[int | None] = mapped_column(Integer)
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """A key of the HTTP API (`campaigns keys create`): only its SHA-256 hash is kept."""
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))        # "ck_AbCd": shown in lists and logs
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))       # "send,read"
    rate_per_s: Mapped[float] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GatewayUser(Base):
    """A credential of the SMTP gateway (`campaigns gateway users add`): its password kept
    only as an scrypt hash; what it may send as and where its mail goes."""
    __tablename__ = "gateway_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))   # scrypt$n$r$p$salt$hash
    from_domains: Mapped[str] = mapped_column(String(2000))   # "example.it,example.com"
    stream: Mapped[str] = mapped_column(String(100))
    relay: Mapped[str | None] = mapped_column(String(100))    # a relay or a pool
    rate_per_s: Mapped[float | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Message(Base):
    """What one transactional message says (a delivery of origin `api`): a stored template
    and its data, or subject and bodies, or the raw bytes as submitted; who handed it over
    (`owner`: an API key) and the caller's `ref`."""
    __tablename__ = "messages"
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"),
                                             primary_key=True)
    stream: Mapped[str] = mapped_column(String(100))
    ref: Mapped[str | None] = mapped_column(String(200), index=True)
    owner: Mapped[str | None] = mapped_column(String(100))
    from_addr: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(Text)
    relay: Mapped[str | None] = mapped_column(String(200))
    template: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: the delivery whose `message_attachments` rows this message sends (one copy for all
    #: the recipients of one submission)
    attachments_from: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MessageAttachment(Base):
    """A file of a transactional message, kept where every worker host reads it (the
    database) until the message is final."""
    __tablename__ = "message_attachments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)


class IdempotencyKey(Base):
    """An `Idempotency-Key` of one caller (`owner`) and its first answer, for 24 h. The unique
    (owner, key) decides concurrent duplicates in the database."""
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key", name="uq_idempotency_owner_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    body_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 index=True)


class Event(Base):
    """One thing that happened to a delivery (queued, delivered, deferred, bounced, failed,
    complained, suppressed …): a message's timeline, and the outbox of the event callbacks
    (`callback`: pending, sent, failed; None when no callback wants it)."""
    __tablename__ = "events"
    __table_args__ = (Index("ix_event_callback_due", "callback", "callback_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(Integer, index=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    code: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    callback: Mapped[str | None] = mapped_column(String(10))
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    callback_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    callback_error: Mapped[str | None] = mapped_column(Text)
