"""Gmail and Google Workspace (https://support.google.com/a/answer/3221692).

    550-5.1.1 The email account that you tried to reach does not exist. ... ?p=NoSuchUser
    550 5.2.1 The email account that you tried to reach is inactive. ... ?p=DisabledUser
"""
from __future__ import annotations

from campaigns.bounces.rules import match_text, rules

_RULES = rules(
    (r"\?p=NoSuchUser|\*\* Address not found \*\*|address couldn't be found", "userunknown"),
    (r"\?p=DisabledUser|account that you tried to reach is (disabled|inactive)", "suspend"),
    (r"\?p=OverQuota(Perm|Temp)|inbox is out of storage space", "mailboxfull"),
    (r"\?p=ReceivingRate|receiving mail (too quickly|at a rate)|relay limit exceeded",
     "speeding"),
    (r"\?p=UnsolicitedRateLimitError|unusual rate of (unsolicited )?mail", "blocked"),
    (r"\?p=RfcMessageNonCompliant|\?p=helo", "notcompliantrfc"),
    (r"\?p=UnsolicitedMessageError|likely unsolicited mail|nature of the content or the links",
     "spamdetected"),
    (r"\?p=(DmarcRejection|UnauthenticatedMessage)|senders to authenticate", "authfailure"),
    (r"\?p=MaxSizeError|exceeded google's message (header )?size limits?", "mesgtoobig"),
    (r"\?p=TooManyRecipientsError", "speeding"),
    (r"\?p=IPv6AuthError|does not have a ptr record", "requireptr"),
    (r"\?p=(WantAuthError|NotAuthorizedError)", "securityerror"),
    (r"\?p=BlockedMessage|illegal attachment|content presents a potential security issue",
     "policyviolation"),
    (r"\?p=MailLoop|exceeded \d+ hops", "networkerror"),
    # Sent by Gmail itself after retrying for days ("Learn more at ... answer/7720").
    (r"did not accept our requests to connect", "expired"),
    (r"low reputation of the sending", "badreputation"),
    (r"ip not in whitelist for rcpt domain", "blocked"),
)


def find(text: str) -> str | None:
    """The reason Google's wording or help link gives."""
    return match_text(text, _RULES)
