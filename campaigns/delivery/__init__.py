"""Getting one message out: the send path (claim, render, relay, record through the
ledger), pacing under every limit (relay, receiver group, campaign, daily caps, adaptive
throttles), parking, relay pools and their circuit breaker, and the explanations of
`status` and `rates estimate`. Decides; campaigns.ledger writes.

May import: ledger, content, relays, rates, bounces, intake, settings. Never the CLI or
Celery (the Celery layer calls it)."""
