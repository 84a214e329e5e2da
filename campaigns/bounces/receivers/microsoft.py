"""Microsoft 365, Outlook.com and Exchange (the "Non-delivery reports in Exchange Online"
pages). Their NDR codes are precise: 5.7.606-649 banned IP, 5.7.509 DMARC, 4.7.650 reputation
rate limit, RESOLVER.ADR.RecipientNotFound, STOREDRV ... mailbox full."""
from __future__ import annotations

import re

from campaigns.bounces.rules import match_text, rules

_CODE_RE = re.compile(r"(?<![\d.])([45])\.(\d)\.(\d{2,3})(?!\.?\d)")

_RULES = rules(
    (r"RESOLVER\.ADR\.(RecipNotFound|RecipientNotFound|ExRecipNotFound|InvalidInSmtp)|"
     r"Recipient not found by SMTP address lookup", "userunknown"),
    (r"RESOLVER\.ADR\.RecipLimit", "speeding"),
    (r"RESOLVER\.RST\.(RecipSizeLimit|SendSizeLimit)", "exceedlimit"),
    (r"RESOLVER\.RST\.(AuthRequired|NotAuthorized)", "securityerror"),
    (r"QUEUE\.Expired", "expired"),
    (r"MapiExceptionShutoffQuotaExceeded|MapiExceptionQuotaExceeded|STOREDRV.{0,40}mailbox full",
     "mailboxfull"),
    (r"banned sending IP|using customer block list|access denied, banned sender|"
     r"on our block list \(S3150\)|access denied, bad helo|rejected by recipient", "blocked"),
    # "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP
    # reputation (S3113)": reputation beats volume.
    (r"\(S3(113|114|115)\)|temporarily rate limited due to ip reputation", "badreputation"),
    # Outlook.com / Hotmail: "550 SC-004 ... part of their network is on our block list",
    # "550 Requested action not taken: mailbox unavailable (-1234:5678:-1234)"
    (r"\b(SC-00[1-5]|DY-00[1-2]|OU-00[1-2])\b", "blocked"),
    (r"mailbox unavailable \(-?\d+:\d+:-?\d+\)", "userunknown"),
    (r"does not pass dmarc verification|must pass either spf or dkim", "authfailure"),
)

#: Exchange Online enhanced codes (class 5 or 4, subject.detail) -> reason.
_CODES: dict[str, str] = {
    "1.351": "userunknown",
    "4.300": "expired", "4.312": "networkerror", "4.316": "expired", "4.317": "expired",
    "4.318": "expired", "7.509": "authfailure", "7.510": "blocked", "7.511": "blocked",
    "7.513": "blocked", "7.506": "blocked", "7.507": "blocked", "7.133": "filtered",
    "7.134": "filtered", "7.650": "badreputation", "7.651": "badreputation",
    "7.501": "spamdetected", "7.502": "spamdetected", "7.503": "spamdetected",
    "7.504": "userunknown", "7.505": "userunknown", "7.750": "blocked",
}


def find(text: str) -> str | None:
    """The reason a Microsoft NDR code or label gives."""
    reason = match_text(text, _RULES)
    if reason:
        return reason
    for m in _CODE_RE.finditer(text):
        detail = int(m.group(3))
        key = f"{m.group(2)}.{detail}"
        if key in _CODES and detail >= 100:
            return _CODES[key]
        if m.group(2) == "7" and 606 <= detail <= 649:
            return "blocked"
        if m.group(2) == "7" and (500 <= detail <= 699 or 850 <= detail <= 899) \
                and m.group(1) == "4":
            return "blocked"
    return None
