"""Fleet-wide send rates: rate strings, GCRA, one atomic Redis acquire over several limits,
recipient-domain groups, send windows, warm-up caps and adaptive throttling.

Pure pieces (parse, gcra, groups, windows, warmup) need no Redis; `RedisLimiter` and
`AdaptiveThrottle` take a redis-py client. Nothing here imports Celery or SQLAlchemy.

May import: redis (the limiter) and the standard library; never a database, the ledger or
Celery (checked by import-linter)."""
from campaigns.rates.adaptive import AdaptiveThrottle, ThrottleState
from campaigns.rates.gcra import GcraBucket, GcraResult, gcra
from campaigns.rates.groups import BUILTIN_GROUPS, BUILTIN_MX_GROUPS, DomainGroups, dns_mx_lookup
from campaigns.rates.limiter import Decision, Limit, RedisLimiter, calendar_day
from campaigns.rates.parse import Rate, format_rate, parse_rate
from campaigns.rates.warmup import WarmupPlan
from campaigns.rates.windows import Span, Window, parse_window

__all__ = [
    "AdaptiveThrottle", "ThrottleState",
    "GcraBucket", "GcraResult", "gcra",
    "BUILTIN_GROUPS", "BUILTIN_MX_GROUPS", "DomainGroups", "dns_mx_lookup",
    "Decision", "Limit", "RedisLimiter", "calendar_day",
    "Rate", "format_rate", "parse_rate",
    "WarmupPlan",
    "Span", "Window", "parse_window",
]
