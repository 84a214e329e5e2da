"""The one decision procedure, shared by SMTP replies and returned messages.

Precedence of `classify_reply` (an SMTP reply met while sending); the first step that
decides names itself in `Classification.rule`:

1. ``delivered``: a 2xx reply.
2. ``relay-account:*``: our relay or account refuses us (SMTP AUTH failed, relaying or
   send-as denied, the account's own sending limit, an unverified sender) -> relay, whether
   or not `from_relay` is passed (campaigns.bounces.replies).
3. ``throttle``: words about our rate, volume or unusual traffic -> throttle, whatever the code.
4. ``server-trouble``: a 4xx in which the receiver speaks of its own trouble (busy, temporary
   system problem, greylisting) -> soft.
5. then the steps shared with returned messages, below; a 4xx is never hard (``+4xx``).

Steps shared with returned messages (`classify`): the message type (``delivered``,
``delayed``), a dialect's own statement (``dialect``), a provider's documented label
(``receiver:NAME``), a phrase specific enough to overrule any code (``text:REASON``), the
enhanced status code when it says more than its class (``status:X.Y.Z``), generic words
(``words:REASON``), the SMTP command (``command:CONN``) and last the basic reply code
(``code:NNN``). When evidence is weak or conflicting the verdict retries (soft/unknown)
rather than suppresses: a generic code alone never makes a hard bounce when the words name
another cause, a temporary DNS failure is not "no such domain", and "user unknown" said
after DATA is a content filter."""
from __future__ import annotations

import re
from dataclasses import dataclass

from campaigns.bounces import replies
from campaigns.bounces.model import RELAY_REASONS, BounceCategory, Classification
from campaigns.bounces.receivers import find_receiver
from campaigns.bounces.rules import MAILBOX as _MAILBOX_ONLY
from campaigns.bounces.rules import AUTH_FAILURE, SPAM, STRONG, WEAK, match_text
from campaigns.bounces.status import (find_command, find_reply_code, find_status,
                                      is_specific, reason_of_reply_code, reason_of_status)

_SPACE_RE = re.compile(r"\s+")
#: Addresses say nothing about the reason ("filtered@example.jp" is just a name).
_ADDRESS_RE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(\.[\w-]+)+")
#: Reply-code prefixes of multi-line replies ("550-5.7.1 ", "552 5.2.2 "): removed before the
#: text rules so that a phrase folded over two reply lines still reads as one.
_PREFIX_RE = re.compile(r"(?<![\w.])[245]\d\d(?:-|\s+(?=[245]\.\d))"
                        r"(?:#?[245]\.\d{1,3}\.\d{1,3}\s+)?")
#: Local delivery agents: their "unknown user" is a real one, whatever the SMTP command.
_LOCAL_AGENT_RE = re.compile(r"\bmail\.local\b|\blocal: |\bmaildrop\b|\bdovecot\b|\bdeliver\b:|"
                             r"\bvirtual\b: |\blmtp\b|\bcyrus\b", re.IGNORECASE)
#: Wordings that say the mailbox does not exist, not merely that it is refused: hard whatever
#: the command, where a bare "User unknown" after DATA (or with no command named) is a
#: content filter answering (Sisimai Reason/Filtered; Japanese carriers do this). Sources:
#: qmail-local.c ("Sorry, no mailbox here by that name. (#5.1.1)"), Sisimai
#: Reason/UserUnknown ("SMTP error from remote mail server after end of data: 553 ... does
#: not exist"), Sun/Oracle Messaging Server ("unknown or illegal alias"), Domino ("not
#: listed in Domino Directory"), Yahoo ("... is no longer valid").
_DEFINITE_USER_RE = re.compile(r"does ?n[o']t exist|no mailbox here by that name|"
                               r"unknown or illegal alias|not listed in (the )?(public name|"
                               r"domino directory)|is no longer valid|vdeliver: invalid",
                               re.IGNORECASE)
#: Reasons that speak of "the address": said in reply to MAIL FROM they mean our sender.
_ADDRESS_REASONS = frozenset({"userunknown", "hostunknown", "notaccept", "suspend"})
#: What a delay notice's words say when they name no cause of their own: still trying. A
#: time-out is no cause either - it is what "not yet" looks like ("Connection timed out",
#: "did not accept our requests to connect"); "No route to host" is one.
_NO_CAUSE = frozenset({"expired", "undefined", "onhold", "greylisted"})
_TIMEOUT_RE = re.compile(r"timed? ?out|no answer", re.IGNORECASE)
#: A DNS answer that is not definitive: Postfix writes "Host not found, try again" for the
#: resolver's TRY_AGAIN (RFC 2308 SERVFAIL, time-out), "Host not found" for NXDOMAIN.
_DNS_TEMPORARY_RE = re.compile(r"not found, try again|temporar\w* (dns|lookup|name|resolution|"
                               r"failure)|servfail|(dns|lookup|name server) (timed? ?out|"
                               r"timeout)|malformed or unexpected name server reply",
                               re.IGNORECASE)
#: Words that name no cause at all: RFC 5321's default texts and their like ("554 Transaction
#: failed", "550 Rejected", "450 Temporary failure"). Alone they leave the verdict unknown.
_GENERIC_ONLY_RE = re.compile(r"^\W*(transaction failed|rejected|refused|denied|failed|"
                              r"temporary failure|permanent failure|requested action not "
                              r"taken|message rejected|delivery failed|error)\W*$",
                              re.IGNORECASE)
#: Words that say the failure is the receiver's or the network's, read against a hard code.
_NOT_HARD_WORDS = frozenset({"networkerror", "systemerror", "mailererror", "expired"})
_HARD = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept", "suspend"})

Verdict = tuple[str, str]        # (fine reason, rule that decided)


@dataclass
class Evidence:
    """What one returned message (or one SMTP reply) says about one recipient."""

    status: str | None = None        # enhanced status code, "5.1.1"
    reply_code: int | None = None    # SMTP reply code, 550
    diagnostic: str = ""             # the server's words
    action: str | None = None        # DSN Action: failed, delayed, delivered, relayed, expanded
    hint: str | None = None          # a reason the detector knows from its dialect
    command: str | None = None       # SMTP command answered: CONN HELO MAIL RCPT DATA
    returned: bool = False           # from a returned message (not a live SMTP reply)
    from_relay: bool = False         # a live reply from our own relay (not a receiver's MX)


def classify_reply(code: int, text: str, enhanced: str | None = None, *,
                   command: str | None = None, from_relay: bool = False) -> Classification:
    """Classify an SMTP reply received while sending ("550 5.1.1 <x@y>: Recipient address
    rejected"). The enhanced code may be passed apart or left inside `text`; `command` is the
    SMTP command it answered when known ("RCPT", "DATA"). See the module docstring for the
    precedence. `from_relay` says the reply came from our own relay in session: then any
    "authentication required" is relay too; from a receiver it is auth unless it is one of
    the relay-account refusals. A 4xx reply is never hard: the receiver asked us to come back."""
    text = text or ""
    status = enhanced or find_status(text)
    flat = _SPACE_RE.sub(" ", text)
    first = _reply_steps(code or None, status, flat)
    if first is not None:
        return first
    evidence = Evidence(status=status, reply_code=code or None, diagnostic=text,
                        command=command, from_relay=from_relay)
    verdict = classify(evidence)
    if code and 400 <= code < 500 and verdict.category is BounceCategory.HARD:
        return Classification(BounceCategory.SOFT, False, verdict.reason, verdict.rule + "+4xx")
    return verdict


def _reply_steps(code: int | None, status: str | None, text: str) -> Classification | None:
    """Steps 1-4 of classify_reply's precedence, or None to go on with the codes."""
    if (code and 200 <= code < 300) or (status or "").startswith("2."):
        return Classification.of("delivered", rule="delivered")
    found = replies.relay_account(code, status, text)
    if found:
        return Classification.of(found[0], BounceCategory.RELAY, False, rule=found[1])
    found = replies.throttle(text) if not match_text(text, _MAILBOX_ONLY) else None
    found = found or replies.server_trouble(code, text)
    return Classification.of(found[0], rule=found[1]) if found else None


def classify(evidence: Evidence) -> Classification:
    """The classification of one piece of evidence (see the module docstring for the order)."""
    action = (evidence.action or "").lower()
    status = _best_status(evidence)
    if action in ("delivered", "relayed", "expanded") or (status or "").startswith("2."):
        return Classification.of("delivered", rule="delivered")
    if action == "delayed":
        return _delayed(evidence, status)
    reason, rule = (evidence.hint, "dialect") if evidence.hint else _reason(evidence, status)
    if reason in RELAY_REASONS and not (evidence.from_relay or evidence.returned):
        return Classification.of(reason, BounceCategory.AUTH, rule=rule + "+not-our-relay")
    return Classification.of(reason, rule=rule)


def _delayed(evidence: Evidence, status: str | None) -> Classification:
    """A delay notice: the sending MTA is still trying. Its cause when its words name one
    ("Mailbox full", "No route to host", "no PTR record"), never permanent; otherwise reason
    "delayed", category expired. Either way the report is not final (campaigns.bounces.model)."""
    reason, rule = (evidence.hint, "dialect") if evidence.hint else \
        _reason(evidence, status, delayed=True)
    if reason in _NO_CAUSE or (reason == "networkerror"
                               and _TIMEOUT_RE.search(evidence.diagnostic or "")):
        return Classification.of("delayed", rule="delayed")
    return Classification.of(reason, permanent=False, rule=f"delayed:{rule}")


def _best_status(evidence: Evidence) -> str | None:
    """The enhanced code to judge by: the one given, unless it is a bare X.0.0 and the
    server's own words carry a specific code of the same class ("Status: 5.0.0" beside
    "550 5.1.1 User unknown"). In a returned message a success code found in the words is a
    transcript line or a quoted original, never the outcome."""
    given = evidence.status
    said = find_status(evidence.diagnostic)
    if said and said.startswith("2.") and evidence.returned:
        said = None
    if not given:
        return said
    if said and not is_specific(given) and is_specific(said) and said[0] == given[0]:
        return said
    return given


@dataclass
class _Context:
    """What a phrase is read against: the codes and the SMTP command it answered."""

    raw: str
    status: str | None
    command: str | None
    returned: bool
    local: bool


def _reason(evidence: Evidence, status: str | None, delayed: bool = False) -> Verdict:
    """The fine reason and the rule that gave it. In a delay notice (`delayed`) only words and
    the codes of an address, a mailbox, a system, content or security (X.1-3.x, X.6-7.x) name
    a cause: its 421 and its X.0.x, X.4.x (routing) and X.5.x (protocol) codes say no more
    than "not yet"."""
    raw = _SPACE_RE.sub(" ", evidence.diagnostic or "")
    text = _ADDRESS_RE.sub("<address>", _SPACE_RE.sub(" ", _PREFIX_RE.sub("", raw)))
    ctx = _Context(raw, status, evidence.command or find_command(raw), evidence.returned,
                   bool(_LOCAL_AGENT_RE.search(raw)))
    account = replies.relay_account(evidence.reply_code or find_reply_code(raw), status, raw)
    if account:
        return account
    found = find_receiver(f"{raw} {status or ''}")
    if found:
        return found[1], f"receiver:{found[0]}"
    if match_text(text, SPAM) and not match_text(text, AUTH_FAILURE):
        return "spamdetected", "text:spam"
    reason = match_text(text, STRONG)
    if reason:
        return _in_context(reason, ctx), f"text:{reason}"
    if delayed:
        said = (status or "").split(".")[1:2] in (["1"], ["2"], ["3"], ["6"], ["7"])
        by_status = reason_of_status(status) if said else None
        reason = match_text(text, WEAK) or by_status
        return (_in_context(reason, ctx), f"words:{reason}") if reason else ("undefined", "none")
    return _by_codes(evidence, ctx, text)


def _by_codes(evidence: Evidence, ctx: _Context, text: str) -> Verdict:
    """The codes, then the generic words, then the command, then the basic reply code."""
    status, raw = ctx.status, ctx.raw
    code = evidence.reply_code or find_reply_code(raw)
    if code == 421 or ((status or "").startswith("4.7.") and (code or 450) < 500):
        # come back later, slower
        return ("toomanyconn", "code:421") if code == 421 else ("speeding", f"status:{status}")
    by_status = reason_of_status(status)
    weak = None if _GENERIC_ONLY_RE.match(text) else match_text(text, WEAK)
    if by_status in _HARD and weak in _NOT_HARD_WORDS:
        return weak, f"words:{weak}-over-status"     # a hard code read against other words
    if by_status:
        return _in_context(by_status, ctx), f"status:{status}"
    if weak:
        return _in_context(weak, ctx), f"words:{weak}"
    if ctx.command in ("CONN", "HELO") and code and code >= 500:
        return "blocked", f"command:{ctx.command}"
    reason = reason_of_reply_code(code)
    if reason == "undefined" and text.strip():
        return "onhold", "none"
    return reason, f"code:{code}" if code else "none"


def _in_context(reason: str, ctx: _Context) -> str:
    """Correct a reason for the SMTP command it answered and the codes beside it. An address
    refused in reply to MAIL FROM is our sender; "user unknown" said after DATA is a content
    filter speaking - unless a local delivery agent said it or the code is X.1.x; a DNS
    failure that is not definitive is a network error, not a domain that does not exist; a
    time-out in a final report is the sending MTA giving up (expired)."""
    by_status = reason_of_status(ctx.status)
    if reason == "hostunknown" and ((ctx.status or "").startswith("4.")
                                    or _DNS_TEMPORARY_RE.search(ctx.raw)):
        return "networkerror"      # a temporary DNS failure, not a domain that does not exist
    if reason in _ADDRESS_REASONS and ctx.command == "MAIL":
        return "rejected"
    if reason == "userunknown" and by_status not in ("userunknown", "hasmoved"):
        unsaid = ctx.command == "DATA" or (ctx.returned and ctx.command is None)
        if unsaid and not ctx.local and not _DEFINITE_USER_RE.search(ctx.raw):
            return "filtered"
    if reason in ("hostunknown", "userunknown") and ctx.command in ("CONN", "HELO"):
        return "blocked"
    if reason == "networkerror" and ctx.returned and _TIMEOUT_RE.search(ctx.raw):
        return "expired"           # a final report: the sending MTA timed out and gave up
    return reason
