"""`campaigns serve` (alias `campaigns api`): the HTTP process (campaigns.web.app) served by
uvicorn."""
from __future__ import annotations

import copy
from typing import Any, Optional

import typer

from campaigns.cli.common import ctx, enqueue_fn, handled, out

#: top-level commands (`campaigns serve`, `campaigns api`): the root registers them
commands = typer.Typer()


@commands.command("serve")
@handled
def serve(listen: Optional[str] = typer.Option(
        None, "--listen",
        help="HOST:PORT (default \\[web] listen, else \\[webhooks] listen, 127.0.0.1:8025)")) -> None:
    """Serve the HTTP API (/api/v1, keys from `campaigns keys`), the provider webhooks (SES
    via SNS, SendGrid, Mailgun, Postmark: their bounces, complaints and deliveries go to the
    ledger) and /healthz, until SIGTERM or Ctrl-C. Put it behind an https reverse proxy."""
    _serve(listen)


@commands.command("api")
@handled
def api_serve(listen: Optional[str] = typer.Option(
        None, "--listen",
        help="HOST:PORT (default \\[web] listen, else \\[webhooks] listen, 127.0.0.1:8025)")) -> None:
    """The same as `campaigns serve` (its former name)."""
    _serve(listen)


def _serve(listen: Optional[str]) -> None:
    from campaigns.errors import ConfigError, InputError
    try:
        import cryptography  # noqa: F401 - SNS and SendGrid signatures
        import fastapi  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise ConfigError(f"`campaigns serve` needs {err.name}: "
                          "pip install 'campaigns[api]'") from None
    from campaigns.intake.webhooks import load_webhook_config
    from campaigns.web.app import create_app

    c = ctx()
    config = load_webhook_config(c.settings)
    address = listen or c.settings.web.listen or config.listen
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--listen must be HOST:PORT such as 127.0.0.1:8025 (got {address!r})",
                         field="listen")
    configured = [name for name, on in config.describe().items() if on is True]
    out.print(f"API on http://{host}:{port}/api/v1 (OpenAPI at /api/v1/openapi.json), "
              f"health at /healthz", markup=False)
    out.print(f"webhooks on http://{host}:{port}/webhooks/… "
              f"(configured: {', '.join(configured) or 'none'})", markup=False)
    uvicorn.run(create_app(c, enqueue_fn()), host=host, port=int(port),
                log_config=_log_config(), log_level="info", access_log=False,
                server_header=False)


def _log_config() -> dict[str, Any]:
    """uvicorn's own logging, plus our loggers (one line per webhook outcome) on the same
    handler. The access log stays off: our line says more, and never the query string."""
    from uvicorn.config import LOGGING_CONFIG
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["campaigns"] = {"handlers": ["default"], "level": "INFO",
                                      "propagate": False}
    return config
