"""The `campaigns` command: the root Typer and nothing else. Each module of this package
owns its commands (a sub-app's `app`, top-level commands' `commands`) and imports only
`campaigns.cli.common`; the root imports them and registers them here, so nothing imports
the root back. Commands import the domain (SQLAlchemy, Redis, Jinja2) when they run:
`campaigns --help` needs none of it.

Enqueueing needs the Celery layer, which hands its `enqueue` function in through
`set_enqueue` (see workers/cli.py), so this package imports no Celery.

May import: anything below it; nothing imports it (checked by import-linter)."""
from __future__ import annotations

import typer

from campaigns.cli import (api, bounces, callbacks, campaigns, contacts, dkim, gateway, keys,
                           messages, rates, redis, relays, schedules, suppressions, templates)
from campaigns.cli.common import Enqueue, set_enqueue

__all__ = ["app", "Enqueue", "set_enqueue"]

# show_locals off: a traceback must never print a frame's password or API key
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Queued bulk e-mail: audience, templates, campaigns, a delivery ledger.")

# top-level commands first (`campaigns --help` lists them in this order), then the sub-apps
for commands in (campaigns.commands, rates.commands, schedules.commands, api.commands):
    app.add_typer(commands)
for module, name in ((contacts, "contacts"), (suppressions, "suppressions"),
                     (templates, "templates"), (relays, "relays"), (redis, "redis"),
                     (bounces, "bounces"), (rates, "rates"), (schedules, "schedules"),
                     (keys, "keys"), (callbacks, "callbacks"), (messages, "messages"),
                     (gateway, "gateway"), (dkim, "dkim")):
    app.add_typer(module.app, name=name)
