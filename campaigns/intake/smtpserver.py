"""aiosmtpd's threaded Controller, able to listen on port 0 (a free port, for tests)."""
from __future__ import annotations

import asyncio

from aiosmtpd.controller import Controller


class AnyPortController(Controller):
    def _trigger_server(self) -> None:
        # Bound to port 0: learn the real port before aiosmtpd's self-test connects to it.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]
