"""Gmail's own bounces (not Google Groups):

    Delivery to the following recipient failed permanently:
         userunknown@example.jp
    Technical details of permanent failure:
    ... The error that the other server returned was:
    550 5.1.1 <userunknown@example.jp>... User Unknown

"Delivery to the following recipient has been delayed" / "Message will be retried for 2 more
day(s)" is a delay warning."""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import Finding
from campaigns.bounces.detectors.prose import Dialect, detect_with, pattern
from campaigns.bounces.message import ReturnedMessage

DIALECT = Dialect(
    marker=pattern(r"Delivery to the following recipients? (failed|has been delayed)|"
                   r"Technical details of (permanent|temporary) failure|"
                   r"\*\* (Address not found|Message not delivered|Delivery incomplete) \*\*"),
    delayed=pattern(r"has been delayed|Message will be retried|Technical details of temporary "
                    r"failure|\*\* Delivery incomplete \*\*"),
)


_SAID_RE = re.compile(r"The error that the other server returned was:\s*", re.IGNORECASE)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """Findings of a Gmail report, or None. Only the remote server's words are kept: the
    boilerplate around them ("it was rejected by the recipient domain") says nothing."""
    found = detect_with(DIALECT, message)
    for f in found or []:
        parts = _SAID_RE.split(f.diagnostic, maxsplit=1)
        if len(parts) == 2:
            f.diagnostic = parts[1]
    return found
