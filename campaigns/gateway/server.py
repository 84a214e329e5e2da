"""The SMTP submission protocol of `campaigns gateway` (aiosmtpd hooks) in front of the ledger;
its listeners and process are `gateway.service`, its certificates `gateway.tls`.

An ERP points its outgoing mail server here. After AUTH (PLAIN or LOGIN, only once the
session is encrypted, or from `allow_plain_auth_from`), each message becomes one delivery
per recipient of its credential's stream, sent on the transactional queue through the
credential's relay or pool, with retries, VERP and bounce intake. The answer to DATA is 250
only once the original and the deliveries are committed; the same Message-ID from the same
credential to the same recipients within 24 h is answered 250 again and sent once.

Replies carry enhanced status codes (RFC 2034/3463) so a mail client can tell a wrong
password (535 5.7.8) from a throttle (451 4.7.1) from a refused sender (553 5.7.1).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from campaigns.content import original
from campaigns.context import Context
from campaigns.gateway import users
from campaigns.settings import Settings

log = logging.getLogger(__name__)


class _QuietAiosmtpd(logging.Filter):
    """aiosmtpd warns on every session about choices made here on purpose: AUTH is not
    tied to TLS by aiosmtpd because the handler ties it (STARTTLS first, or an allowed
    address), and it sets the deprecated Session.login_data itself."""
    _KNOWN = ("auth_required == True but auth_require_tls == False",
              "Session.login_data is deprecated")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self._KNOWN)


logging.getLogger("mail.log").addFilter(_QuietAiosmtpd())
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS",
                        module="aiosmtpd")

#: failed logins from one address within WINDOW_S before it is answered 421 for LOCK_S
MAX_FAILURES, WINDOW_S, LOCK_S = 5, 60.0, 60.0

Publish = Callable[[list[int]], None]

# aiosmtpd's own replies carry no enhanced code: the class of each reply code's usual one
_ENHANCED = {221: "2.0.0", 250: "2.0.0", 235: "2.7.0", 252: "2.0.0", 421: "4.3.0",
             451: "4.3.0", 452: "4.5.3", 500: "5.5.2", 501: "5.5.4", 502: "5.5.1",
             503: "5.5.1", 504: "5.5.4", 530: "5.7.0", 535: "5.7.8", 538: "5.7.11",
             550: "5.0.0", 552: "5.3.4", 553: "5.1.3", 554: "5.0.0", 555: "5.5.4"}
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}\b")


def enhanced(reply: str) -> str:
    """`reply` with an enhanced status code after its reply code when it has none."""
    if len(reply) < 4 or not reply[:3].isdigit() or _HAS_ENHANCED.match(reply):
        return reply
    code = _ENHANCED.get(int(reply[:3]))
    return f"{reply[:4]}{code} {reply[4:]}" if code else reply


@dataclass(frozen=True)
class _Pending:
    mechanism: str
    auth_data: Any


class _Smtp(SMTP):
    """aiosmtpd's server with an enhanced status code on every reply but the greeting,
    the EHLO/HELO lines and 354, and the password checked off the event loop (a first login
    costs an scrypt hash and a database read: other sessions go on meanwhile)."""
    _plain = False

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd's PLAIN and LOGIN call this synchronously: hand the check to _settle
        return AuthResult(success=False, handled=False, auth_data=_Pending(mechanism, auth_data))

    async def _settle(self, result: AuthResult) -> AuthResult:
        pending = result.auth_data
        if not isinstance(pending, _Pending):
            return result
        assert self._authenticator is not None
        return await asyncio.get_running_loop().run_in_executor(
            None, self._authenticator, self, self.session, self.envelope, pending.mechanism,
            pending.auth_data)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._settle(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._settle(await super().auth_LOGIN(_, args))

    async def push(self, status: Any) -> None:  # type: ignore[override]
        if isinstance(status, str) and not self._plain and not status.startswith(("220", "354")):
            status = enhanced(status)
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._plain = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._plain = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._plain = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._plain = False


@dataclass
class Stats:
    """What `campaigns gateway status` shows (kept in Redis by the running gateway)."""
    started: float = field(default_factory=time.time)
    open: set[int] = field(default_factory=set)     # sessions now (STARTTLS makes no new one)
    accepted: deque[float] = field(default_factory=deque)   # the last minute's
    accepted_total: int = 0
    refusals: Counter[str] = field(default_factory=Counter)

    def accept(self) -> None:
        now = time.time()
        self.accepted.append(now)
        self.accepted_total += 1
        while self.accepted and self.accepted[0] < now - 60:
            self.accepted.popleft()

    def refused(self, reason: str) -> None:
        self.refusals[reason] += 1

    def view(self) -> dict[str, Any]:
        now = time.time()
        return {"connections": len(self.open),
                "accepted_last_minute": sum(1 for t in self.accepted if t > now - 60),
                "accepted_total": self.accepted_total,
                "refusals": dict(self.refusals), "since": self.started}


class Handler:
    """aiosmtpd's hooks: who may log in, send as whom, to whom, and the durable accept."""

    def __init__(self, ctx: Context, publish: Publish, stats: Stats | None = None) -> None:
        self.ctx, self.publish = ctx, publish
        self.stats = stats or Stats()
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}
        self._limiter: Any = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    # --- connection and AUTH --------------------------------------------------------------
    def _peer(self, session: Session) -> str:
        peer = session.peer
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)

    def _plain_allowed(self, server: SMTP, session: Session) -> bool:
        return _encrypted(server) or \
            self._peer(session) in self.settings.gateway.allow_plain_auth_from

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        lines = [r for r in responses[:-1]
                 if not (r.startswith("250-AUTH") and not self._plain_allowed(server, session))]
        return lines + ["250-PIPELINING", "250 ENHANCEDSTATUSCODES"]

    def _locked_out(self, peer: str) -> bool:
        with self._lock:
            until = self._locked.get(peer)
            if until is not None and until > time.monotonic():
                return True
            self._locked.pop(peer, None)
            return False

    def _failed_login(self, peer: str) -> None:
        now = time.monotonic()
        with self._lock:
            seen = self._failures.setdefault(peer, deque())
            seen.append(now)
            while seen and seen[0] < now - WINDOW_S:
                seen.popleft()
            if len(seen) >= MAX_FAILURES:
                self._locked[peer] = now + LOCK_S
                seen.clear()
            if len(self._failures) > 10_000:     # bounded: forget the quiet ones
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]

    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope,
                          args: list[str]) -> Any:
        from aiosmtpd.smtp import MISSING
        peer = self._peer(session)
        if self._locked_out(peer):
            self.stats.refused("locked_out")
            asyncio.get_running_loop().call_later(0.05, _close, server)
            return (f"421 4.7.0 Too many failed logins from {peer}; try again in a minute")
        if not self._plain_allowed(server, session):
            self.stats.refused("auth_without_tls")
            return "538 5.7.11 Encryption required: use STARTTLS before AUTH"
        return MISSING

    def authenticator(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        peer = self._peer(session)
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        try:
            name = auth_data.login.decode("utf-8")
            password = auth_data.password.decode("utf-8")
        except UnicodeDecodeError:
            name, password = "", ""
        user = users.authenticate(self.ctx.db, name, password) if name else None
        if user is None:
            self._failed_login(peer)
            self.stats.refused("bad_credentials")
            log.info("gateway: failed login from %s", peer)   # never the name or password
            return AuthResult(success=False, handled=False,
                              message="535 5.7.8 Authentication credentials invalid")
        return AuthResult(success=True, auth_data=user)

    # --- the envelope ----------------------------------------------------------------------
    def _user(self, session: Session) -> users.UserInfo | None:
        user = session.auth_data
        return user if isinstance(user, users.UserInfo) else None

    def _over_rate(self, user: users.UserInfo) -> bool:
        if not user.rate_per_s:
            return False
        from campaigns.rates.limiter import Limit, RedisLimiter
        if self._limiter is None:
            self._limiter = RedisLimiter(self.ctx.redis, prefix="campaigns:gateway:")
        decision = self._limiter.acquire([Limit(key=f"user:{user.name}",
                                                rate_per_s=user.rate_per_s,
                                                burst=max(1, int(user.rate_per_s)))])
        return not decision.allowed

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        user = self._user(session)
        if user is None:
            return "530 5.7.0 Authentication required"
        if not user.may_send_as(address):
            self.stats.refused("sender_domain")
            return (f"553 5.7.1 <{address}>: this login may send as "
                    f"{', '.join(user.from_domains)} only")
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, self._over_rate, user):
            self.stats.refused("rate")
            return (f"451 4.7.1 This login is limited to {user.rate_per_s:g} messages/s; "
                    "try again shortly")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        from campaigns.audience.addresses import normalise_address
        user = self._user(session)
        if user is None:
            return "530 5.7.0 Authentication required"
        if len(envelope.rcpt_tos) >= self.settings.gateway.max_recipients:
            self.stats.refused("too_many_recipients")
            return (f"452 4.5.3 Too many recipients: at most "
                    f"{self.settings.gateway.max_recipients} per message")
        try:
            address = normalise_address(address)
        except ValueError as err:
            self.stats.refused("bad_recipient")
            return f"553 5.1.3 <{address}>: not a valid address ({err})"
        if self.settings.gateway.suppressed == "reject":
            from campaigns.ledger.messages import suppression_for
            loop = asyncio.get_running_loop()
            stop = await loop.run_in_executor(None, suppression_for, self.ctx.db, address,
                                              user.stream)
            if stop is not None:
                self.stats.refused("suppressed")
                return f"550 5.1.1 <{address}>: {stop['reason']}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    # --- DATA: durable before 250 ------------------------------------------------------------
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        user = self._user(session)
        if user is None:
            return "530 5.7.0 Authentication required"
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        senders = original.addresses(raw, "from")
        outside = [a for a in senders if not user.may_send_as(a)]
        if outside or not senders:
            self.stats.refused("from_header")
            what = f"From {', '.join(outside)}" if outside else "a message without a From"
            return (f"553 5.7.1 {what}: this login may send as "
                    f"{', '.join(user.from_domains)} only")
        loop = asyncio.get_running_loop()
        try:
            first, replayed = await loop.run_in_executor(
                None, self._store, user, envelope.mail_from, list(envelope.rcpt_tos), raw)
        except Exception:  # noqa: BLE001 - nothing was committed: the client tries again
            log.exception("gateway: storing a message from %s failed", user.name)
            self.stats.refused("store_failed")
            return "451 4.3.0 Could not store the message now; try again later"
        self.stats.accept()
        return f"250 2.0.0 Ok: queued as {first}" + (" (already accepted)" if replayed else "")

    def _store(self, user: users.UserInfo, mail_from: str, rcpts: list[str],
               raw: bytes) -> tuple[int, bool]:
        """The original (Bcc removed, Message-ID and Date added when missing) and one
        delivery per recipient, committed in one transaction; then published."""
        from campaigns.ledger.messages import NewMessage, campaign_name, submit
        domain = mail_from.rpartition("@")[2] or "localhost"
        kept, message_id, given = original.prepare(raw, domain)
        idempotency = None
        if given:   # the ERP's resubmission after a timeout: same id, same recipients
            key = hashlib.sha256("\0".join([message_id] + sorted(rcpts)).encode()).hexdigest()
            idempotency = (f"smtp:{key}", key)
        items = [NewMessage(to=to, from_addr=mail_from, stream=user.stream, relay=user.relay,
                            ref=message_id[:200], origin="smtp",
                            attachments=[("original.eml", "message/rfc822", kept)])
                 for to in rcpts]
        callbacks, name = self.settings.callbacks, campaign_name(user.stream)
        done = submit(self.ctx.db, items, owner=f"gateway:{user.name}", idempotency=idempotency,
                      wants=lambda t: callbacks.wants(t, user.stream, name))
        ids = [int(m["id"]) for m in done.response.get("messages", [])]
        if done.queued and not done.replayed:
            try:
                self.publish(done.queued)
            except Exception:  # noqa: BLE001 - stored: the upkeep publishes lost stream rows
                log.exception("gateway: publishing %d stored messages failed; the upkeep "
                              "will publish them", len(done.queued))
        return (ids[0] if ids else 0), done.replayed


def _encrypted(server: SMTP) -> bool:
    """After STARTTLS, or on the implicit-TLS port."""
    if server._tls_protocol is not None:
        return True
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def _close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()
