"""One detector per dialect, tried in order; the first that recognises the message wins.

Message types come first (complaints, provider notifications, auto-replies), then the
dialects with a signature of their own, then the MTAs whose prose says more than their DSN,
then the plain RFC 3464 DSN, and last the generic scanner. A dialect's findings are merged
with the DSN fields of the same message (see campaigns.bounces.parse)."""
from __future__ import annotations

from campaigns.bounces.detectors import (amazonses, arf, autoreply, courier, domino, dsn,
                                         exchange, exim, generic, gmail, googlegroups,
                                         imailserver, mailmarshal, mms, postfix, powermta, qmail,
                                         sendmail, trendmicro, unsubscribe, yahoo, zoho)
from campaigns.bounces.detectors.base import Detector, Finding

#: (name, detector) in the order they are tried.
DETECTORS: tuple[tuple[str, Detector], ...] = (
    ("arf", arf.detect),
    ("amazonses", amazonses.detect),
    ("unsubscribe", unsubscribe.detect),
    ("autoreply", autoreply.detect),
    ("powermta", powermta.detect),
    ("googlegroups", googlegroups.detect),
    ("exchange", exchange.detect),
    ("imailserver", imailserver.detect),
    ("domino", domino.detect),
    ("mailmarshal", mailmarshal.detect),
    ("trendmicro", trendmicro.detect),
    ("mms", mms.detect),
    ("postfix", postfix.detect),
    ("zoho", zoho.detect),
    ("exim", exim.detect),
    ("qmail", qmail.detect),
    ("sendmail", sendmail.detect),
    ("gmail", gmail.detect),
    ("yahoo", yahoo.detect),
    ("courier", courier.detect),
    ("dsn", dsn.detect),
    ("generic", generic.detect),
)

#: Detectors whose findings are complete on their own (not merged with DSN fields).
SELF_CONTAINED = frozenset({"arf", "amazonses", "unsubscribe", "autoreply", "powermta"})

__all__ = ["DETECTORS", "SELF_CONTAINED", "Detector", "Finding"]
