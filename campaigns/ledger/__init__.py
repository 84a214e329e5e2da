"""The ledger: the only writer of campaign and delivery state (the `campaigns` and
`deliveries` tables, bounce events and suppressions).

Everything else (the send path, bounce intake, lifecycle, scheduling, the CLI and later the
HTTP API and the SMTP gateway) calls these functions and never writes those tables itself;
statuses are the enums of `campaigns.models`. Modules:

- `sends`: one message's path: peek, claim (with the suppression check in the same
  statement), record the relay's answer, mark suppressed, give a row back when our relay
  refuses us.
- `campaigns`: create a campaign, `transition` it between statuses (a guarded UPDATE: only
  from the statuses given), notes and run context.
- `rows`: rows in bulk: expand a list into deliveries, cancel the unsent, expire leases to
  `in_doubt`, finish campaigns with no open row, the re-publish queries.
- `reports`: a bounce or complaint report recorded once under its key, and what its
  category does to the delivery and the suppression list.
- `messages`: a stream's campaign (`tx:NAME`), transactional messages with their content,
  files and the caller's idempotency keys; the sweep of files and old keys.
- `events`: a delivery's timeline and the event callbacks' outbox, written in the same
  transaction as the change they tell of.
- `reads`: read-only queries (lists, counts), light to import for the CLI.

May import: `campaigns.models`, `campaigns.db`, `campaigns.errors`, `campaigns.bounces.model`
(the category enum), SQLAlchemy. Never Celery, Redis, relays or the CLI.
"""
