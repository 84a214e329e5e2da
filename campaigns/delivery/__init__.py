"""Getting one message out: the send path (claim, render, relay, record through the
ledger), pacing under every limit (relay, receiver group, campaign, daily caps, adaptive
throttles), parking, relay pools and their circuit breaker, and the explanations of
`status` and `rates estimate`. Decides; campaigns.ledger writes."""
