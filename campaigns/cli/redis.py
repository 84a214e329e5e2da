"""`campaigns redis …`: the embedded Redis of this data dir."""
from __future__ import annotations

import typer

from campaigns.cli.common import ctx, handled, out

app = typer.Typer(no_args_is_help=True, help="The embedded Redis (when no CAMPAIGNS_REDIS_URL).")


@app.command("stop")
@handled
def redis_stop() -> None:
    """Stop the embedded Redis of this data dir."""
    from campaigns import embedded_redis
    c = ctx()
    stopped = embedded_redis.stop(c.settings.data_dir)
    out.print("stopped" if stopped else "not running")


@app.command("status")
@handled
def redis_status() -> None:
    from campaigns import embedded_redis
    c = ctx()
    if not c.embedded_redis:
        out.print("external Redis (CAMPAIGNS_REDIS_URL)")
    else:
        running = embedded_redis.is_running(c.settings.data_dir)
        out.print(f"embedded Redis {'running' if running else 'not running'} at "
                  f"{embedded_redis.socket_path(c.settings.data_dir)}")
