"""What a relay's failure means and when to try again: the verdict on an error (the relay's
category, else the classifier's reading of its reply), exponential backoff with jitter, and
the spread of retries that spend no attempt. Pure functions of the send path
(campaigns.delivery.sending)."""
from __future__ import annotations

import random

from campaigns.bounces import BounceCategory, Classification, classify_reply
from campaigns.errors import RelayError
from campaigns.settings import SendingPolicy

#: the classifier's rule for a throttle it read in the reply's words ("rate limited", "too
#: many connections"), and the rule of a throttle a relay states (a provider's 429); a
#: throttle the classifier infers from a bare code (421, 4.7.x) is no rate signal
RATE_WORDS = "throttle"


def _verdict(err: RelayError) -> Classification:
    """What a relay's failure means, decided once, here: the category the relay gave when it
    knows the meaning (an HTTP API's status or error field), else the classifier's reading of
    the server's SMTP reply, else (no reply at all) a network error."""
    if err.category is not None:
        category = BounceCategory(err.category)
        # a relay's stated throttle is about the rate (a provider's 429): RATE_WORDS, so the
        # throttle slows whoever said it (campaigns.delivery.pacing.throttle_target)
        rule = RATE_WORDS if category is BounceCategory.THROTTLE else f"relay:{category.value}"
        return Classification.of(err.reason or category.value, category, rule=rule)
    if err.code is None:
        return Classification.of("networkerror")
    return classify_reply(err.code, err.text or str(err), err.enhanced, from_relay=True)


#: categories of a 5xx reply that are still retried within the attempt budget
RETRIED = frozenset({BounceCategory.SOFT, BounceCategory.BLOCK, BounceCategory.UNKNOWN})


def backoff_s(policy: SendingPolicy, attempts: int, hint_s: float | None = None) -> float:
    """Exponential backoff with jitter; a server's "retry after" hint wins when longer."""
    delay = min(policy.retry_max_s, policy.retry_base_s * float(2 ** max(0, attempts - 1)))
    delay *= random.uniform(1.0, 1.5)
    return float(max(delay, hint_s or 0.0))


def spread_s(policy: SendingPolicy, age_s: float, hint_s: float | None = None) -> float:
    """The wait before retrying a row that spends no attempt (a throttle): it grows with the
    row's age (half of it, with jitter), so the retries of a throttled recipient are spread
    over [sending] max_defer_s, a few dozen at most, instead of coming back forever."""
    return max(backoff_s(policy, 1, hint_s), 0.5 * age_s * random.uniform(1.0, 1.5))
