"""The HTTP side (ASGI, Starlette): today the provider webhook endpoint."""
