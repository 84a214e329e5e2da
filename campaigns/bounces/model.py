"""What the bounce classifier returns: a category the engine acts on, whether the failure is
permanent, and Sisimai's finer reason (kept for people and reports).

Two rules that are not obvious from the category table:

- A delay notice (DSN "Action: delayed", "has not yet been delivered", "will be retried for
  2 more days") has `final=False` on its BounceReport and `permanent=False`: the sending MTA is
  still trying, so the ledger must never treat it as an outcome. Its category is `expired`
  with reason "delayed" (what the corpus calls a delay), unless its words name a cause of
  their own ("Mailbox full", "No route to host"): then it is classified by that cause, as the
  corpus does, still not final and not permanent. Every other report has `final=True`.
- Our relay or account refusing us (AUTH failed, relaying or send-as denied, the account's
  own sending limit, an unverified sender) is `relay` whether or not the caller says the
  reply came from our relay (campaigns.bounces.replies); any other "authentication
  required" (Exchange's RESOLVER.RST.AuthRequired: a group refusing outside senders) is
  `relay` only with `classify_reply(..., from_relay=True)` or in a returned message, else
  `auth`."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class BounceCategory(str, enum.Enum):
    """What the engine does about a reply or a returned message (DESIGN.md, "Bounce categories")."""

    HARD = "hard"            # suppress now
    SOFT = "soft"            # retry; suppress after N in a window
    BLOCK = "block"          # the receiver refuses us: retry later, alert
    THROTTLE = "throttle"    # slow down for that receiver; never a bounce
    POLICY = "policy"        # content, TLS or PTR rules; no retry, alert
    AUTH = "auth"            # SPF, DKIM or DMARC failure; no retry, alert
    RELAY = "relay"          # our own relay refuses us; pause the campaign
    TOOLARGE = "toolarge"    # message too big; no retry
    EXPIRED = "expired"      # the sending MTA gave up after retries
    COMPLAINT = "complaint"  # ARF spam report; suppress now
    AUTOREPLY = "autoreply"  # out of office; ignore
    DELIVERED = "delivered"  # success DSN
    UNKNOWN = "unknown"      # anything else; soft by default


#: Sisimai's fine reasons (plus "delayed" and "ratelimited") and the category each one means.
CATEGORY_OF_REASON: dict[str, BounceCategory] = {
    "userunknown": BounceCategory.HARD, "hostunknown": BounceCategory.HARD,
    "hasmoved": BounceCategory.HARD, "notaccept": BounceCategory.HARD,
    "suspend": BounceCategory.HARD, "suppressed": BounceCategory.HARD,
    "mailboxfull": BounceCategory.SOFT, "systemfull": BounceCategory.SOFT,
    "systemerror": BounceCategory.SOFT, "networkerror": BounceCategory.SOFT,
    "mailererror": BounceCategory.SOFT, "syntaxerror": BounceCategory.SOFT,
    "greylisted": BounceCategory.SOFT,
    "delayed": BounceCategory.EXPIRED,
    "blocked": BounceCategory.BLOCK, "badreputation": BounceCategory.BLOCK,
    "spamdetected": BounceCategory.BLOCK, "rejected": BounceCategory.BLOCK,
    "filtered": BounceCategory.BLOCK,
    "speeding": BounceCategory.THROTTLE, "ratelimited": BounceCategory.THROTTLE,
    "toomanyconn": BounceCategory.THROTTLE,
    "policyviolation": BounceCategory.POLICY, "notcompliantrfc": BounceCategory.POLICY,
    "contenterror": BounceCategory.POLICY,
    # the recipient refuses mail from us by their own choice: retrying cannot help
    "recipientrefusal": BounceCategory.POLICY, "requireptr": BounceCategory.POLICY,
    "failedstarttls": BounceCategory.POLICY, "virusdetected": BounceCategory.POLICY,
    "authfailure": BounceCategory.AUTH,
    "norelaying": BounceCategory.RELAY, "securityerror": BounceCategory.RELAY,
    "mesgtoobig": BounceCategory.TOOLARGE, "exceedlimit": BounceCategory.TOOLARGE,
    "expired": BounceCategory.EXPIRED,
    "feedback": BounceCategory.COMPLAINT,
    # a list-unsubscribe request the recipient's mail provider sent for them (Apple Mail's
    # "Unsubscribe" button: X-Apple-Unsubscribe, Auto-Submitted): stop mailing, like a complaint
    "unsubscribe": BounceCategory.COMPLAINT,
    "vacation": BounceCategory.AUTOREPLY,
    "delivered": BounceCategory.DELIVERED,
    "onhold": BounceCategory.UNKNOWN, "undefined": BounceCategory.UNKNOWN,
}

#: Reasons that say our relay refused us (category relay or auth, see the module docstring).
RELAY_REASONS = frozenset({"norelaying", "securityerror"})

#: Reasons that are never permanent whatever their category (a delay is not an outcome).
NOT_PERMANENT_REASONS = frozenset({"delayed"})

#: Categories whose failure does not go away by sending the same message again.
PERMANENT_CATEGORIES = frozenset({
    BounceCategory.HARD, BounceCategory.POLICY, BounceCategory.AUTH, BounceCategory.TOOLARGE,
    BounceCategory.EXPIRED, BounceCategory.COMPLAINT,
})


@dataclass(frozen=True)
class Classification:
    """One verdict. `permanent` is True when retrying the same message cannot help. `rule`
    names the step of the precedence that decided ("relay-account", "throttle",
    "status:5.1.1", "text:mailboxfull", ...; see campaigns.bounces.classify) so a person can
    see why; it takes no part in equality."""

    category: BounceCategory
    permanent: bool
    reason: str
    rule: str = field(default="", compare=False)

    @classmethod
    def of(cls, reason: str, category: BounceCategory | None = None,
           permanent: bool | None = None, rule: str = "") -> Classification:
        """The classification for a fine reason, with the category and permanence it implies
        unless given."""
        cat = category or CATEGORY_OF_REASON.get(reason, BounceCategory.UNKNOWN)
        if permanent is None:
            permanent = cat in PERMANENT_CATEGORIES and reason not in NOT_PERMANENT_REASONS
        return cls(cat, permanent, reason, rule)


@dataclass(frozen=True)
class BounceReport(Classification):
    """One recipient's outcome as written in a returned message (a DSN, a non-standard bounce,
    an ARF complaint or an auto-reply). `final` is False for a delay notice only: the message
    may still be delivered, so the ledger records it without closing the delivery."""

    recipient: str | None = None
    status: str | None = None                 # enhanced status code, "5.1.1"
    reply_code: int | None = None             # SMTP reply code, 550
    diagnostic: str | None = None             # the server's words, one line
    original_message_id: str | None = None    # Message-ID of the message we sent
    original_headers: dict[str, str] = field(default_factory=dict)
    feedback_type: str | None = None          # ARF Feedback-Type for complaints ("abuse")
    final: bool = True                        # False for a delay notice: not an outcome yet
