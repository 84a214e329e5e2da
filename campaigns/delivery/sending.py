"""The send path: claim one ledger row, render, send through the relay, record the answer.
One `Sender` per worker thread: each campaign's compiled template and message builder
cached, one relay object (one SMTP connection) per relay name."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from typing import Any
from datetime import timedelta

from campaigns.bounces import BounceCategory, BounceReport, Classification
from campaigns.content.attachments import AttachmentError
from campaigns.content.compose import CampaignRuntime, compose, load_runtime, return_path
from campaigns.content.dkim import Signer
from campaigns.db import Database
from campaigns.errors import (InputError, NotFound, RelayConfigError, RelayError, RelayInDoubt,
                              RelayPermanentError, RelayTemporaryError, TemplateRenderError)
from campaigns.ledger import campaigns as ledger_campaigns
from campaigns.ledger import messages as ledger_messages
from campaigns.ledger import sends as ledger
from campaigns.ledger.events import EVENT_OF_STATUS
from campaigns.models import CampaignStatus, DeliveryStatus, utcnow
from campaigns.delivery.pacing import Pacer
from campaigns.delivery.retries import RATE_WORDS, RETRIED, _verdict, backoff_s, spread_s
from campaigns.delivery.messages import MessageComposer
from campaigns.delivery.pools import Breaker, candidates
from campaigns.delivery.recording import GroupRecorder
from campaigns.relays import OutgoingMessage, Relay, build_relay
from campaigns.settings import Settings, require_secrets

log = logging.getLogger(__name__)

#: a task re-queued for want of a token comes back after its wait plus up to this much
#: (growing with each re-queue); small, so a raised rate is used within about a second
MAX_JITTER_S = 1.0


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str                       # the row's new status, or "skipped" when not claimable
    retry_in_s: float | None = None   # publish the task again after this many seconds
    priority: str = "bulk"            # … on the queue of this priority
    hops: int = 0                     # times this task was re-queued for want of a token


SKIPPED = Outcome("skipped")


@dataclass(slots=True)
class _Route:
    relay: str            # the relay that takes the message (its token is taken)
    spare: list[str]      # a pool's other relays, in order, to fail over to
    pool: bool
    rt: CampaignRuntime
    message: Any = None   # a transactional message's content (campaigns.ledger.messages)


def _outside_window(rt: CampaignRuntime) -> bool:
    return rt.window is not None and not rt.window.contains(utcnow())


class Sender:
    def __init__(self, settings: Settings, db: Database, pacer: Pacer, breaker: Breaker,
                 recorder: GroupRecorder | None = None) -> None:
        self.settings, self.db, self.pacer, self.breaker = settings, db, pacer, breaker
        #: a worker's group commit of `sent` answers; None: each answer written at once
        self.recorder = recorder
        self._campaigns: dict[int, CampaignRuntime] = {}
        self._relays: dict[str, Relay] = {}
        self._messages = MessageComposer(settings, db)   # transactional messages
        #: DKIM signatures of the [dkim] domains (keys loaded once, on first use)
        self.dkim = Signer(settings.dkim)
        #: the send under way, for log lines: (delivery id, "campaign X, delivery N, to @domain")
        self.sending: tuple[int, str] = (0, "")
        #: a relay refused us (auth, our account): the settings may be changed by a person
        self.relay_refused = False

    def close(self) -> None:
        for relay in self._relays.values():
            relay.close()
        self._relays.clear()

    def relay(self, name: str | None) -> Relay:
        config = self.settings.relay(name)
        if config.name not in self._relays:
            require_secrets(config)     # RelayConfigError: the campaign pauses, saying why
            self._relays[config.name] = build_relay(config)
        return self._relays[config.name]

    def _runtime(self, campaign_id: int) -> CampaignRuntime:
        rt = self._campaigns.get(campaign_id)
        if rt is None:
            with self.db.session() as s:
                rt = self._campaigns[campaign_id] = load_runtime(s, campaign_id)
        return rt

    def _precheck(self, delivery_id: int, hops: int) -> Outcome | _Route:
        """Before the claim, a read and the limiter: is the row pending, its campaign
        sending and inside its window, which relay takes it (a pool's first relay with its
        breaker closed and room under its daily cap), and is there a token of every limit
        the message is under? A message without a token costs a read and one Redis call,
        no ledger write: it books its slot and is re-queued, or waits parked for its
        receiver group's or campaign's limit (campaigns.delivery.parking), or its campaign waits for
        a long wait."""
        row = ledger.peek(self.db, delivery_id)
        if row is None:
            return SKIPPED
        rt = self._runtime(row.campaign_id)
        if row.suppressed:
            return self._suppressed(rt, delivery_id)
        if _outside_window(rt):
            return SKIPPED  # the upkeep parks the campaign and republishes at the opening
        message, names, pool = self._relays_for(rt, delivery_id, row.origin)
        decision = None
        for i, relay in enumerate(names):
            if not self.breaker.allow(relay):
                continue
            decision = self.pacer.acquire(relay, rt.name, rt.priority, row.address, hops)
            if decision.allowed:
                return _Route(relay, names[i + 1:], pool, rt, message)
            if pool and decision.binding == f"relay:{relay}:daily":
                continue    # this relay is at its daily cap: spill to the next one
            break
        if decision is None:   # every relay (of the pool) has its breaker open
            return Outcome("throttled", priority=rt.priority, hops=hops + 1, retry_in_s=(
                self.settings.breaker.cooldown_s * random.uniform(0.5, 1.0)))
        if decision.wait_s >= self.settings.rates.long_wait_s:
            self._campaign_waits(rt, decision.wait_s, f"waiting: {decision.binding} reached")
            return Outcome("waiting")
        if self.pacer.parks(decision.binding):
            self.pacer.parking.park(str(decision.binding), delivery_id, rt.priority)
            return Outcome("parked")
        # the wait is this message's own booked slot; a little jitter against bunching
        jitter = random.uniform(0, min(MAX_JITTER_S, 0.01 * 2 ** min(hops, 10)))
        return Outcome("throttled", retry_in_s=decision.wait_s + jitter, priority=rt.priority,
                       hops=hops + 1)

    def _relays_for(self, rt: CampaignRuntime, delivery_id: int,
                    origin: str) -> tuple[Any, list[str], bool]:
        """(a transactional message's content or None, the relays that may take the row in
        order, whether they are a pool): a message names its own relay, else the campaign's."""
        message = None
        if origin != "list":     # a transactional message: its own content and relay
            message = ledger_messages.content(self.db, delivery_id)
        chosen = message.relay if message is not None and message.relay else rt.relay
        return message, candidates(self.settings, chosen), self.settings.pool(chosen) is not None

    def _suppressed(self, rt: CampaignRuntime, delivery_id: int) -> Outcome:
        """Mark the row `suppressed` when it is pending and its address is suppressed (the
        claim never takes such a row); SKIPPED when it was not claimable for another reason."""
        event, callback = self._follows(rt, "suppressed")
        if ledger.mark_suppressed(self.db, delivery_id, event=event, callback=callback):
            return Outcome(DeliveryStatus.SUPPRESSED.value)
        return SKIPPED

    def _campaign_waits(self, rt: CampaignRuntime, wait_s: float, reason: str) -> None:
        """A long wait (a daily cap): the campaign waits; the upkeep wakes it at resume_at."""
        resume_at = utcnow() + timedelta(seconds=wait_s)
        ledger_campaigns.transition(
            self.db, rt.id, CampaignStatus.SENDING, CampaignStatus.WAITING,
            f"{reason}; resumes {resume_at:%Y-%m-%d %H:%M} UTC", resume_at=resume_at)

    def deliver(self, delivery_id: int, hops: int = 0) -> Outcome:
        """Send one ledger row if it can be claimed. Never raises for a recipient's or
        relay's failure: the answer is written to the row and returned."""
        if self.pacer.unlimited():      # no limit anywhere: the claim is the first step
            done = self._claim_first(delivery_id, hops)
            if done is not None:
                return done
        route = self._precheck(delivery_id, hops)
        if isinstance(route, Outcome):
            return route
        claimed = ledger.claim(self.db, delivery_id, self.settings.sending.lease_s)
        if claimed is None:   # taken by another worker, or suppressed since the precheck
            return self._suppressed(route.rt, delivery_id)
        return self._compose_and_send(delivery_id, *claimed, route)

    def _claim_first(self, delivery_id: int, hops: int) -> Outcome | None:
        """With no limit to ask first, one round trip fewer: claim, then choose the relay.
        A row found not sendable after all (window closed, every breaker open, a limit set
        meanwhile) is given back untouched. None: not claimable, or given back for the
        careful path (`_precheck`) to say why."""
        claimed = ledger.claim(self.db, delivery_id, self.settings.sending.lease_s)
        if claimed is None:
            return None
        row, contact = claimed
        rt = self._runtime(row.campaign_id)
        if _outside_window(rt):
            ledger.unclaim(self.db, delivery_id)
            return SKIPPED  # the upkeep parks the campaign and republishes at the opening
        message, names, pool = self._relays_for(rt, delivery_id, row.origin)
        for i, relay in enumerate(names):
            if not self.breaker.allow(relay):
                continue
            if not self.pacer.acquire(relay, rt.name, rt.priority, row.address, hops).allowed:
                break
            route = _Route(relay, names[i + 1:], pool, rt, message)
            return self._compose_and_send(delivery_id, row, contact, route)
        ledger.unclaim(self.db, delivery_id)
        return None

    def _compose_and_send(self, delivery_id: int, row: Any, contact: Any,
                          route: _Route) -> Outcome:
        rt = route.rt
        if route.message is not None:
            return self._deliver_message(rt, delivery_id, row, route)
        attributes, source_dir = (dict(contact[0] or {}), contact[1]) if contact else ({}, None)
        try:
            data, message_id = compose(rt, self.settings, delivery_id=delivery_id,
                                       address=row.address, attributes=attributes,
                                       source_dir=source_dir)
        except (TemplateRenderError, AttachmentError, InputError) as err:
            return self._record(rt, delivery_id, "failed", text=str(err))
        message = OutgoingMessage(sender=return_path(self.settings, delivery_id,
                                                     rt.builder.envelope_from),
                                  recipient=row.address,
                                  data=data, message_id=message_id,
                                  smtputf8=not row.address.isascii())
        return self._send(rt, delivery_id, row.attempts, message, route)

    def _deliver_message(self, rt: CampaignRuntime, delivery_id: int, row: Any,
                         route: _Route) -> Outcome:
        """A transactional message (the API's or the gateway's): its own content and sender."""
        try:
            data, message_id, sender = self._messages.compose(route.message, delivery_id,
                                                              row.address, row.origin)
        except (TemplateRenderError, InputError, NotFound) as err:
            return self._record(rt, delivery_id, "failed", text=str(err))
        message = OutgoingMessage(sender=return_path(self.settings, delivery_id, sender),
                                  recipient=row.address, data=data, message_id=message_id,
                                  smtputf8=not row.address.isascii())
        return self._send(rt, delivery_id, row.attempts, message, route)

    def _follows(self, rt: CampaignRuntime, event: str) -> tuple[bool, bool]:
        """(the delivery's events are written, this one is called back): a stream's
        messages keep a timeline; a bulk campaign only when [callbacks] names it."""
        callback = self.settings.callbacks.wants(event, rt.stream, rt.name)
        return rt.stream is not None or callback, callback

    def _send(self, rt: CampaignRuntime, delivery_id: int, attempts: int,
              message: OutgoingMessage, route: _Route) -> Outcome:
        relay: str | None = route.relay
        where = self._where(rt, delivery_id, message.recipient)
        log.debug("%s: sending through relay %s", where, relay)
        signed: dict[str, OutgoingMessage] = {}
        while True:
            assert relay is not None
            try:
                outgoing = self._as_relay_takes(relay, message, signed)
            except InputError as err:   # dkimpy could not sign it (a malformed header)
                return self._record(rt, delivery_id, "failed", text=str(err))
            try:
                result = self.relay(relay).send(outgoing)
            except RelayConfigError as err:
                self._trip(relay)
                relay = self._failover(rt, route, relay, message)
                if relay is not None:
                    continue
                return self._relay_refused(rt, delivery_id, err)
            except (RelayTemporaryError, RelayPermanentError) as err:
                verdict = _verdict(err)
                down = err if isinstance(err, RelayTemporaryError) and err.relay_down else None
                # the relay cannot be reached, or refuses us: its breaker; in a pool, the next
                if down is not None or verdict.category == BounceCategory.RELAY:
                    self._trip(relay)
                    nxt = self._failover(rt, route, relay, message)
                    if nxt is not None:
                        relay = nxt
                        continue
                if down is not None:
                    return self._relay_down(rt, delivery_id, relay, down)
                return self._failed(rt, delivery_id, attempts, message, err, relay, verdict)
            except RelayInDoubt as err:
                return self._record(rt, delivery_id, "in_doubt", err, relay=relay)
            self.breaker.success(relay)
            return self._record(rt, delivery_id, "sent", code=result.code, enhanced=result.enhanced,
                                text=result.text, message_id=message.message_id, relay=relay,
                                provider_id=result.provider_id)

    def _as_relay_takes(self, relay: str, message: OutgoingMessage,
                        signed: dict[str, OutgoingMessage]) -> OutgoingMessage:
        """`message` DKIM-signed when its From domain has a [dkim] table and `relay` does
        not sign itself (dkim = false: as composed). Signed here, at each attempt, because
        only here is the relay known: a pool chooses it per message and a failover changes
        it. The signature is made once per message, on the first attempt that needs it, and
        kept in `signed` for the pool's next relay; a message that only relays with
        dkim = false take is never signed (no cost)."""
        if not self.dkim or not self.settings.relay(relay).dkim:
            return message
        if "dkim" not in signed:
            signed["dkim"] = replace(message, data=self.dkim.sign(message.data))
        return signed["dkim"]

    def _where(self, rt: CampaignRuntime, delivery_id: int, address: str) -> str:
        label = f"campaign {rt.name}, delivery {delivery_id}, to @{address.rpartition('@')[2]}"
        self.sending = (delivery_id, label)
        return label

    def _trip(self, relay: str) -> None:
        """`relay` could not be reached or refused us: a failure on its circuit breaker."""
        self.breaker.failure(relay)

    def _failover(self, rt: CampaignRuntime, route: _Route, failed: str,
                  message: OutgoingMessage) -> str | None:
        """The pool's next relay that is allowed and has a token after `failed` could not
        be reached or refused us; None when none has (or the campaign uses a plain relay).
        The message was not handed over, so sending it through another relay is safe."""
        if not route.pool:
            return None
        log.warning("%s: relay %s failed; trying the pool's next relay", self.sending[1], failed)
        while route.spare:
            nxt = route.spare.pop(0)
            if not self.breaker.allow(nxt):
                continue
            if not self.pacer.acquire(nxt, rt.name, rt.priority, message.recipient).allowed:
                continue
            return nxt
        return None

    def _relay_down(self, rt: CampaignRuntime, delivery_id: int, relay: str,
                    err: RelayTemporaryError) -> Outcome:
        """The relay could not be reached: not the recipient's fault. The row waits about a
        breaker cooldown without spending an attempt; while the breaker is open, its tasks
        come back without a claim (see _precheck), so an outage of any length costs nothing."""
        log.warning("%s: relay %s unavailable: %s", self.sending[1], relay, err)
        wait = self.settings.breaker.cooldown_s * random.uniform(0.5, 1.0)
        return self._defer(rt, delivery_id, err, max(wait, err.retry_after_s or 0.0),
                           refund=True, relay=relay)

    def _failed(self, rt: CampaignRuntime, delivery_id: int, attempts: int,
                message: OutgoingMessage, err: RelayTemporaryError | RelayPermanentError,
                relay: str, verdict: Classification) -> Outcome:
        """The relay said no: what the classifier calls the reply decides (campaigns.intake).
        Throttle: slow down whoever said it (pacing.throttle_target) when its words speak of
        a rate, retry, never a bounce or an attempt. Relay: pause the campaign, keep the
        message. Hard and complaint: bounced and suppressed. Permanent (policy, auth, too
        large, expired): bounced, not suppressed. Soft (greylisting, a mailbox or server's
        trouble), block and unknown: a deferral of this recipient alone, retried within the
        attempt budget, then failed (a soft bounce towards the limit). Any deferral past
        [sending] max_defer_s is `expired` instead."""
        if verdict.category == BounceCategory.RELAY:
            return self._relay_refused(rt, delivery_id, RelayConfigError(
                str(err), code=err.code, enhanced=err.enhanced, text=err.text,
                category=err.category, reason=err.reason, http_status=err.http_status))
        temporary = err if isinstance(err, RelayTemporaryError) else None
        hint = temporary.retry_after_s if temporary else None
        if temporary is not None and verdict.category == BounceCategory.THROTTLE:
            if verdict.rule == RATE_WORDS:
                hint = self.pacer.throttled(relay, message.recipient, temporary, verdict)
            # neither a bounce nor an attempt; spread over the maximum deferral age
            return self._defer(rt, delivery_id, err, None, hint=hint, refund=True,
                               verdict=verdict)
        retry = temporary is not None or (not verdict.permanent and verdict.category in RETRIED)
        if retry and attempts < self.settings.sending.max_attempts:
            return self._defer(rt, delivery_id, err, backoff_s(self.settings.sending, attempts,
                                                               hint), verdict=verdict)
        status = "failed" if retry else "bounced"
        outcome = self._record(rt, delivery_id, status, err, verdict=verdict, note=(
            f"gave up after {attempts} attempts: " if retry else ""))
        self._bounce(delivery_id, attempts, message.recipient, verdict, err)
        return outcome

    def _age_s(self, delivery_id: int) -> float:
        """Seconds since the row was first tried (0 when this is its first answer)."""
        first = ledger.first_attempt_at(self.db, delivery_id)
        if first is None:
            return 0.0
        return max(0.0, (utcnow() - first).total_seconds())

    def _defer(self, rt: CampaignRuntime, delivery_id: int, err: RelayError,
               delay_s: float | None, *, hint: float | None = None, refund: bool = False,
               verdict: Classification | None = None, relay: str | None = None) -> Outcome:
        """Defer the row for `delay_s` (None: `spread_s` of its age), or make it `expired`
        when it was first tried [sending] max_defer_s ago or more. The last retry is moved
        up to the deadline, so every recipient reaches a final state in bounded time."""
        policy = self.settings.sending
        age = self._age_s(delivery_id)
        if age >= policy.max_defer_s:
            return self._record(rt, delivery_id, DeliveryStatus.EXPIRED.value, err, refund=refund,
                                verdict=verdict, relay=relay, note=(
                                    f"expired: still deferred {age:.0f} s after the first "
                                    f"try (max_defer_s {policy.max_defer_s:g}): "))
        delay = spread_s(policy, age, hint) if delay_s is None else delay_s
        delay = max(0.0, min(delay, policy.max_defer_s - age))
        return self._record(rt, delivery_id, DeliveryStatus.DEFERRED.value, err, retry_in_s=delay,
                            refund=refund, priority=rt.priority, verdict=verdict, relay=relay)

    def _bounce(self, delivery_id: int, attempts: int, address: str,
                verdict: Classification, err: RelayError) -> None:
        """A final failure: into the bounce record, the suppression policy and the
        reputation guard (campaigns.intake.apply)."""
        from campaigns import intake
        report = BounceReport(verdict.category, verdict.permanent, verdict.reason,
                              recipient=address, status=err.enhanced, reply_code=err.code,
                              diagnostic=(err.text or str(err))[:1000])
        intake.apply(self.db, self.settings, report, source="smtp", delivery_id=delivery_id,
                     key=f"smtp:{delivery_id}:{attempts}", address=address)

    def _relay_refused(self, rt: CampaignRuntime, delivery_id: int,
                       err: RelayConfigError) -> Outcome:
        """Our relay refuses us: not the recipient's fault. The row goes back to the queue
        (the attempt is not counted) and the campaign pauses until a person fixes the relay."""
        reason = f"relay '{rt.relay or self.settings.default_relay}' refused us: {err}"
        log.error("%s: campaign paused: %s", self.sending[1], reason)
        self.relay_refused = True
        ledger.give_back(self.db, delivery_id, rt.id, code=err.code, enhanced=err.enhanced,
                         text=str(err), reason=reason)
        return Outcome(DeliveryStatus.QUEUED.value)

    def _record(self, rt: CampaignRuntime, delivery_id: int, status: str,
                err: RelayError | None = None, *, code: int | None = None, enhanced: str | None = None, text: str | None = None,
                message_id: str | None = None, retry_in_s: float | None = None,
                note: str = "", refund: bool = False, priority: str = "bulk",
                verdict: Classification | None = None, relay: str | None = None,
                provider_id: str | None = None) -> Outcome:
        if err is not None:
            code, enhanced, text = err.code, err.enhanced, err.text or str(err)
        event, callback = self._follows(rt, EVENT_OF_STATUS.get(status, status))
        answer = dict(code=code, enhanced=enhanced, text=note + (text or ""),
                      message_id=message_id, retry_in_s=retry_in_s, refund=refund,
                      category=verdict.category.value if verdict else None,
                      reason=verdict.reason if verdict else None, relay=relay,
                      provider_id=provider_id)
        if self.recorder is not None and status == DeliveryStatus.SENT.value and not event:
            self.recorder.add(ledger.record_values(delivery_id, status, **answer))
        else:
            ledger.record(self.db, delivery_id, status, event=event, callback=callback,
                          **answer)
        return Outcome(status, retry_in_s, priority)
