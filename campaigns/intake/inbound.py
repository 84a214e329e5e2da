"""`campaigns bounces serve`: the inbound SMTP endpoint for returned messages (aiosmtpd).

Point the bounce domain's MX (or a Postfix transport) at it. It accepts mail only for the
bounce domain (RCPT for any other domain: 550 5.7.1, so it is never an open relay), reads
each message with the bounce classifier and applies its reports to the ledger
(campaigns.intake) before answering 250: a message it could not record gets 451 and the
sending MTA tries again later, so nothing is lost. The VERP address the bounce was sent to
(`bounces+TOKEN@domain`) names the delivery; without a bounce domain configured it accepts
mail for any address at `accept_domain` given on the command line.
"""
from __future__ import annotations

import asyncio
import logging
from aiosmtpd.smtp import SMTP, Envelope, Session

from campaigns.db import Database
from campaigns.intake import Applied, process_message
from campaigns.settings import Settings
from campaigns.intake.smtpserver import AnyPortController

log = logging.getLogger(__name__)

#: a returned message larger than this is refused (a bounce quotes at most the original)
MAX_SIZE = 10 * 1024 * 1024


class BounceHandler:
    def __init__(self, db: Database, settings: Settings, domain: str) -> None:
        self.db, self.settings, self.domain = db, settings, domain.lower()
        self.applied: list[Applied] = []     # what the last messages did (tests, logging)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.rpartition("@")[2].lower() != self.domain:
            return f"550 5.7.1 <{address}>: this server accepts mail for {self.domain} only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            applied = await asyncio.get_running_loop().run_in_executor(
                None, lambda: process_message(self.db, self.settings, raw, source="inbound",
                                              envelope_to=list(envelope.rcpt_tos)))
        except Exception as err:  # noqa: BLE001 - the database is down: let the MTA retry
            log.exception("bounce from %s not recorded", envelope.mail_from)
            return f"451 4.3.0 not recorded now, try again later ({type(err).__name__})"
        self.applied.extend(applied)
        for a in applied:
            log.info("bounce %s %s/%s: %s (delivery %s)", a.address, a.category, a.reason,
                     a.action, a.delivery_id)
        return "250 2.0.0 OK: " + (", ".join(f"{a.category}:{a.action}" for a in applied)
                                   or "no report found")[:200]


class BounceServer:
    """The endpoint in a background thread: `with BounceServer(...) as srv: srv.port`."""

    def __init__(self, db: Database, settings: Settings, host: str, port: int,
                 domain: str | None = None) -> None:
        domain = domain or settings.bounces.domain
        if not domain:
            from campaigns.errors import ConfigError
            raise ConfigError("bounces serve needs a bounce domain: set [bounces] domain in "
                              "campaigns.toml (or --domain)")
        self.handler = BounceHandler(db, settings, domain)
        self.controller = AnyPortController(self.handler, hostname=host, port=port,
                                     data_size_limit=MAX_SIZE, server_hostname=domain,
                                     ready_timeout=10)

    @property
    def host(self) -> str:
        return str(self.controller.hostname)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> BounceServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> BounceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
