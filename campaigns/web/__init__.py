"""The HTTP side: the one ASGI app of `campaigns serve` (`app`), the JSON API (`api`, FastAPI
on Starlette), its keys (`keys`) and the provider webhook endpoint (`webhooks`).

May import: the domain (lifecycle, ledger, scheduling, intake, rates, settings); nothing
below imports it. Sits above the domain like the CLI."""
