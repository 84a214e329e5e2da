"""The SMTP submission gateway (`campaigns gateway`): `server` (the aiosmtpd hooks, TLS, the
durable accept), `users` (its credentials). On top, like `web/`: only the CLI imports it.

May import: ledger, content, settings, rates (the per-login rate), context."""
