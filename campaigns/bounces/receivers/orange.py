"""Orange and La Poste (France): every reply ends with a code such as "OFR_416",
"OFR006_102" or "LPN007_426"; its last three digits name the reason (the Orange postmaster
error code table)."""
from __future__ import annotations

import re

_CODE_RE = re.compile(r"\b(?:LPN|LPNAAA|OFR|OUK)(?:_|\d{3}[-_])(\d{3})\b", re.IGNORECASE)

_CODES: dict[str, str] = {
    "101": "blocked", "102": "blocked", "103": "blocked", "104": "toomanyconn",
    "108": "blocked", "305": "securityerror", "401": "authfailure", "402": "securityerror",
    "403": "rejected", "405": "rejected", "415": "rejected", "416": "userunknown",
    "417": "mailboxfull", "418": "userunknown", "420": "suspend", "421": "rejected",
    "426": "suspend", "505": "systemerror", "506": "spamdetected", "510": "blocked",
    "514": "mesgtoobig", "517": "authfailure", "630": "policyviolation", "999": "blocked",
}


def find(text: str) -> str | None:
    """The reason of the Orange/La Poste code in `text`, or None."""
    m = _CODE_RE.search(text)
    return _CODES.get(m.group(1)) if m else None
