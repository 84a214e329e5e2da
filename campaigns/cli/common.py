"""What every command module of the CLI shares: the consoles, `handled` (our errors as one
line and exit 1), `ctx()` (the project's context, opened when a command runs), the enqueue
hook and the Redis client of a running fleet. Imports nothing of the CLI; the command
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


def ctx() -> Context:
    from campaigns.context import open_context
    return open_context()


def redis_if_running(settings: Any) -> Any:
    """A client of the configured Redis, or of the embedded one when it runs (None when it
    does not: never start one just to look)."""
    import redis

    from campaigns import embedded_redis
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    if embedded_redis.is_running(settings.data_dir):
        return redis.Redis(unix_socket_path=str(embedded_redis.socket_path(settings.data_dir)),
                           socket_timeout=2)
    return None
