"""Smaller providers with documented codes: Cox and Spectrum ("AUP#..."), GoDaddy ("IB..."),
Tencent QQ, Facebook ("RCP-P..."), Mimecast, Apple iCloud."""
from __future__ import annotations

import re

from campaigns.bounces.rules import match_text, rules

_SPECTRUM_RE = re.compile(r"AUP#[-A-Za-z]*(\d{4})")
#: Spectrum's "understanding email error codes" ranges: (first, last, reason).
_SPECTRUM = (
    (1000, 1000, "blocked"), (1010, 1080, "rejected"), (1090, 1090, "systemerror"),
    (1100, 1150, "requireptr"), (1160, 1190, "policyviolation"), (1200, 1250, "blocked"),
    (1260, 1260, "networkerror"), (1300, 1340, "toomanyconn"), (1350, 1490, "speeding"),
    (1500, 1520, "rejected"), (1530, 1530, "mesgtoobig"), (1540, 1550, "speeding"),
    (1560, 1560, "policyviolation"), (1580, 1580, "speeding"),
)

_RULES = rules(
    # Cox ("email error codes" page)
    (r"AUP#(CXBL|CDRBL|IPBL\d+)", "blocked"),
    (r"AUP#CXDNS", "requireptr"),
    (r"AUP#CXSNDR", "authfailure"),
    (r"AUP#CXSMTP", "rejected"),
    (r"AUP#(CXCNCT|CXMXRT)", "toomanyconn"),
    (r"AUP#(CXTHRT|CXMJ)", "securityerror"),
    (r"AUP#URLBL", "spamdetected"),
    # GoDaddy: "IB607 ... has sent to too many recipients this hour"
    (r"\bIB(60[5-9])\b", "speeding"),
    (r"\bIB(10[0-9]|11[0-9])\b", "blocked"),
    # Tencent QQ: "Ip frequency limited", "Connection frequency limited", "Mailbox not found"
    (r"(ip|connection|domain) frequency limited", "toomanyconn"),
    # Facebook: "RCP-P1 ... does not exist", "RCP-P2 ... recipient preferences"
    (r"\bRCP-P2\b", "recipientrefusal"),
    (r"\bRCP-P1\b|\bRCP-T1\b", "userunknown"),
    (r"\bPOL-P[0-9]\b", "policyviolation"),
    # Mimecast: "email rejected due to security policies - MCSpamSignature"
    (r"MCSpamSignature|Mimecast.{0,40}spam", "spamdetected"),
    (r"rejected due to security policies", "policyviolation"),
)


def find(text: str) -> str | None:
    """The reason a provider code in `text` gives, or None."""
    m = _SPECTRUM_RE.search(text)
    if m:
        number = int(m.group(1))
        for first, last, reason in _SPECTRUM:
            if first <= number <= last:
                return reason
    return match_text(text, _RULES)
