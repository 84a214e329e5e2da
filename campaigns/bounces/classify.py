"""The one decision procedure, shared by SMTP replies and returned messages.

Order: the message type (delivered, delayed), the receiver-specific rules, the ordered text
rules, the RFC 3463 enhanced status code, the generic words, and last the reply code."""
from __future__ import annotations

import re
from dataclasses import dataclass

from campaigns.bounces.model import RELAY_REASONS, BounceCategory, Classification
from campaigns.bounces.receivers import find_receiver_reason
from campaigns.bounces.rules import STRONG, WEAK, match_text
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
#: Reasons that speak of "the address": said in reply to MAIL FROM they mean our sender.
_ADDRESS_REASONS = frozenset({"userunknown", "hostunknown", "notaccept", "suspend"})
#: What a delay notice's words say when they name no cause of their own: still trying. A
#: time-out is no cause either - it is what "not yet" looks like ("Connection timed out",
#: "did not accept our requests to connect"); "No route to host" is one.
_NO_CAUSE = frozenset({"expired", "undefined", "onhold"})
_TIMEOUT_RE = re.compile(r"timed? ?out|no answer", re.IGNORECASE)


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
    SMTP command it answered when known ("RCPT", "DATA"). `from_relay` says the reply came
    from our own relay in session: only then are "relaying denied" and "authentication
    required" category relay (pause the campaign); otherwise they are auth. A 4xx reply is
    never hard: the receiver asked us to come back."""
    text = text or ""
    evidence = Evidence(status=enhanced or find_status(text), reply_code=code or None,
                        diagnostic=text, command=command, from_relay=from_relay)
    verdict = classify(evidence)
    if code and 400 <= code < 500 and verdict.category is BounceCategory.HARD:
        return Classification(BounceCategory.SOFT, False, verdict.reason)
    return verdict


def classify(evidence: Evidence) -> Classification:
    """The classification of one piece of evidence (see the module docstring for the order)."""
    action = (evidence.action or "").lower()
    status = _best_status(evidence)
    if action in ("delivered", "relayed", "expanded") or (status or "").startswith("2."):
        return Classification.of("delivered")
    if action == "delayed":
        return _delayed(evidence, status)
    reason = evidence.hint or _reason(evidence, status)
    if reason in RELAY_REASONS and not (evidence.from_relay or evidence.returned):
        return Classification.of(reason, BounceCategory.AUTH)
    return Classification.of(reason)


def _delayed(evidence: Evidence, status: str | None) -> Classification:
    """A delay notice: the sending MTA is still trying. Its cause when its words name one
    ("Mailbox full", "No route to host"), never permanent; otherwise reason "delayed",
    category expired. Either way the report is not final (see campaigns.bounces.model)."""
    reason = evidence.hint or _reason(evidence, status, delayed=True)
    if reason in _NO_CAUSE or (reason == "networkerror"
                               and _TIMEOUT_RE.search(evidence.diagnostic or "")):
        return Classification.of("delayed")
    return Classification.of(reason, permanent=False)


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


def _reason(evidence: Evidence, status: str | None, delayed: bool = False) -> str:
    """The fine reason. In a delay notice (`delayed`) only words and the codes of an address,
    a mailbox, a system, content or security (X.1-3.x, X.6-7.x) name a cause: its 421 and its
    X.0.x, X.4.x (routing) and X.5.x (protocol) codes say no more than "not yet"."""
    raw = _SPACE_RE.sub(" ", evidence.diagnostic or "")
    text = _ADDRESS_RE.sub("<address>", _SPACE_RE.sub(" ", _PREFIX_RE.sub("", raw)))
    command = evidence.command or find_command(raw)
    local = bool(_LOCAL_AGENT_RE.search(raw))
    by_status = reason_of_status(status)
    reason = find_receiver_reason(f"{raw} {status or ''}")
    if reason:
        return reason
    reason = match_text(text, STRONG)
    if reason:
        return _in_context(reason, status, command, evidence.returned, local)
    if delayed:
        said = (status or "").split(".")[1:2] in (["1"], ["2"], ["3"], ["6"], ["7"])
        reason = match_text(text, WEAK) or (by_status if said else None)
        return _in_context(reason, status, command, True, local) if reason else "undefined"
    code = evidence.reply_code or find_reply_code(raw)
    if code == 421 or ((status or "").startswith("4.7.") and (code or 450) < 500):
        return "toomanyconn" if code == 421 else "speeding"   # come back later, slower
    if by_status:
        return _in_context(by_status, status, command, evidence.returned, local)
    reason = match_text(text, WEAK)
    if reason:
        return _in_context(reason, status, command, evidence.returned, local)
    if command in ("CONN", "HELO") and code and code >= 500:
        return "blocked"
    reason = reason_of_reply_code(code)
    if reason == "undefined" and text.strip():
        return "onhold"
    return reason


def _in_context(reason: str, status: str | None, command: str | None, returned: bool,
                local: bool = False) -> str:
    """Correct a reason for the SMTP command it answered. An address refused in reply to
    MAIL FROM is our sender; "user unknown" said after DATA (or, in a returned message, with
    no command named and no X.1.x code) is a content filter speaking - unless a local
    delivery agent said it (`local`)."""
    by_status = reason_of_status(status)
    if reason == "hostunknown" and (status or "").startswith("4."):
        return "networkerror"      # a temporary DNS failure, not a domain that does not exist
    if reason in _ADDRESS_REASONS and command == "MAIL":
        return "rejected"
    if reason == "userunknown" and by_status not in ("userunknown", "hasmoved"):
        if command == "DATA" or (returned and command is None and not local):
            return "filtered"
    if reason in ("hostunknown", "userunknown") and command in ("CONN", "HELO"):
        return "blocked"
    return reason
