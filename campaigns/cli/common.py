"""What every command module of the CLI shares: the consoles, `handled` (our errors as one
line and exit 1), `ctx()` (the project's context, opened when a command runs), and the enqueue
hook. Imports nothing of the CLI; the command
modules import only this, and the root (`campaigns.cli`) imports them.

Enqueueing needs the Celery layer, which hands its `enqueue` function in through
`set_enqueue` (see workers/cli.py), so the CLI imports no Celery."""
from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from campaigns.errors import CampaignsError

if TYPE_CHECKING:   # imported when a command runs: --help needs no SQLAlchemy nor Redis
    from campaigns.context import Context

F = TypeVar("F", bound=Callable[..., Any])
Enqueue = Callable[[Sequence[int], Optional[float], str], None]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_enqueue_factory: Callable[[], Enqueue] | None = None


def set_enqueue(factory: Callable[[], Enqueue]) -> None:
    global _enqueue_factory
    _enqueue_factory = factory


def enqueue_fn() -> Enqueue:
    if _enqueue_factory is None:
        raise CampaignsError("no task queue configured (run through the `campaigns` command)")
    return _enqueue_factory()


def handled(fn: F) -> F:
    """Print our errors as one clear line on stderr and exit 1; never a traceback."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CampaignsError as e:
            # the message may hold "[AUTHENTICATIONFAILED]" and the like: not markup
            err.print(f"[red]error:[/red] {escape(str(e))}", markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]


#: a command's Redis calls give up after this long (a worker's never do)
REDIS_TIMEOUT_S = 5.0


def ctx() -> Context:
    """The composition root of this command (campaigns.context): settings, database, and
    on first use the Redis client, pacer and breaker."""
    from campaigns.context import open_context
    return open_context(redis_timeout_s=REDIS_TIMEOUT_S)
