"""The HTTP side (ASGI, Starlette): today the provider webhook endpoint.

May import: intake, settings. Sits above the domain like the CLI."""
