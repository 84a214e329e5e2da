"""The gateway process: its listeners (submission with STARTTLS, implicit TLS), the run
until SIGTERM, and its figures in Redis for `campaigns gateway status`."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from aiosmtpd.smtp import SMTP

from campaigns.context import Context
from campaigns.gateway.server import Handler, Publish, _Smtp
from campaigns.gateway.tls import server_context, tls_files

log = logging.getLogger(__name__)


class Gateway:
    """The listeners: submission with STARTTLS on `listen`, implicit TLS on `tls_listen`."""

    def __init__(self, ctx: Context, publish: Publish) -> None:
        self.ctx = ctx
        self.handler = Handler(ctx, publish)
        self.cert, self.key, self.made_cert = tls_files(ctx.settings)
        self.context = server_context(self.cert, self.key)
        self._servers: list[asyncio.base_events.Server] = []

    def _factory(self, implicit: bool) -> Callable[[], SMTP]:
        g = self.ctx.settings.gateway
        handler = self.handler

        def make() -> SMTP:
            server = _Smtp(handler, data_size_limit=g.max_message_bytes, enable_SMTPUTF8=True,
                           hostname=g.hostname, ident="campaigns gateway",
                           tls_context=None if implicit else self.context,
                           require_starttls=False, timeout=g.timeout_s, auth_required=True,
                           auth_require_tls=False, authenticator=handler.authenticator,
                           auth_exclude_mechanism=["CRAM-MD5"])
            return server
        return make

    async def start(self) -> list[str]:
        g = self.ctx.settings.gateway
        loop = asyncio.get_running_loop()
        where = []
        for address, implicit in ((g.listen, False), (g.tls_listen, True)):
            if not address:
                continue
            host, _, port = address.rpartition(":")
            server = await loop.create_server(
                self._counted(self._factory(implicit)), host=host.strip("[]"), port=int(port),
                ssl=self.context if implicit else None)
            self._servers.append(server)
            bound = server.sockets[0].getsockname()
            where.append(f"{'implicit TLS' if implicit else 'submission (STARTTLS)'} on "
                         f"{bound[0]}:{bound[1]}")
        return where

    def _counted(self, make: Callable[[], SMTP]) -> Callable[[], SMTP]:
        stats = self.handler.stats

        def counted() -> SMTP:
            server = make()
            made = server.connection_made
            lost = server.connection_lost

            def connection_made(transport: Any) -> None:
                stats.open.add(id(server))
                made(transport)

            def connection_lost(exc: Exception | None) -> None:
                stats.open.discard(id(server))
                lost(exc)
            server.connection_made = connection_made  # type: ignore[method-assign]
            server.connection_lost = connection_lost  # type: ignore[method-assign]
            return server
        return counted

    @property
    def ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self._servers]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()


STATS_KEY = "campaigns:gateway:stats:"


def serve(ctx: Context, publish: Publish, say: Callable[[str], None] = print) -> None:
    """Run the gateway until SIGTERM or SIGINT; its figures go to Redis every 2 s for
    `campaigns gateway status`."""
    asyncio.run(_main(ctx, publish, say))


async def _main(ctx: Context, publish: Publish, say: Callable[[str], None]) -> None:
    import json
    import os
    import signal
    import socket

    gateway = Gateway(ctx, publish)
    if gateway.made_cert:
        say(f"no [gateway] cert_file: made a self-signed certificate {gateway.cert} "
            f"(key {gateway.key}); give clients that certificate to trust, or configure "
            "your own pair")
    for line in await gateway.start():
        say(f"gateway: {line}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    key = f"{STATS_KEY}{socket.gethostname()}:{os.getpid()}"
    while not stop.is_set():
        view = gateway.handler.stats.view()
        view["listening"] = gateway.ports
        try:
            await loop.run_in_executor(None, lambda: ctx.redis.set(key, json.dumps(view), ex=10))
        except Exception:  # noqa: BLE001 - figures only; the gateway goes on
            log.warning("gateway: could not write its figures to Redis")
        try:
            await asyncio.wait_for(stop.wait(), 2.0)
        except asyncio.TimeoutError:
            pass
    await gateway.close()
    say("gateway: stopped")


def status(ctx: Context) -> list[dict[str, Any]]:
    """The figures of every running gateway process (written within the last 10 s)."""
    import json
    client = ctx.running_redis()
    if client is None:
        return []
    found = []
    for key in client.scan_iter(match=f"{STATS_KEY}*", count=100):
        raw = client.get(key)
        if raw:
            view = json.loads(raw)
            view["process"] = (key.decode() if isinstance(key, bytes) else key)[len(STATS_KEY):]
            found.append(view)
    return sorted(found, key=lambda v: v["process"])
