"""smtplib pieces of the SMTP relay: a client that waits for the greeting only so long, a
cheap test of an idle connection, the DATA payload."""
from __future__ import annotations

import re
import select
import smtplib
import socket
import ssl
from functools import cache
from typing import Any

#: the longest wait for the 220 greeting once TCP is up (capped by timeout_s): a server on an
#: implicit-TLS port (465) waits for our TLS ClientHello and never greets in plain text
GREETING_TIMEOUT_S = 10.0
_LEADING_DOT = re.compile(rb"(?m)^\.")


def greeting_s(timeout_s: float) -> float:
    """How long to wait for the greeting of a plain or STARTTLS connection."""
    return min(timeout_s, GREETING_TIMEOUT_S)


@cache
def default_helo() -> str:
    # What smtplib would use (FQDN or [address]), computed once: it may cost a DNS lookup.
    return smtplib.SMTP().local_hostname


class NoGreeting(smtplib.SMTPException):
    """Raised by Client: the TCP connection is up but the server said nothing within the
    greeting timeout."""


class Client(smtplib.SMTP):
    """smtplib.SMTP waiting at most `greeting_s` for the 220 greeting once TCP is up;
    connecting and every later reply get `timeout`."""

    def __init__(self, host: str, port: int, *, local_hostname: str, timeout: float,
                 greeting_s: float) -> None:
        self.greeting_s = greeting_s
        super().__init__(host, port, local_hostname=local_hostname, timeout=timeout)

    def connect(self, host: str = "localhost", port: int = 0,
                source_address: Any = None) -> tuple[int, bytes]:
        if source_address:
            self.source_address = source_address
        self.sock = sock = socket.create_connection((host, port), self.timeout,
                                                    self.source_address)
        self.file = None
        sock.settimeout(self.greeting_s)
        try:
            reply = self.getreply()
        except smtplib.SMTPServerDisconnected as err:
            if isinstance(err.__context__, TimeoutError):
                raise NoGreeting() from None
            raise
        sock.settimeout(self.timeout)
        return reply


def peer_closed(conn: smtplib.SMTP) -> bool:
    """True when an idle connection has something to read: EOF or an unsolicited 421 (servers
    close idle connections). Costs one poll(), no round trip."""
    sock = conn.sock
    if sock is None or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: leading dots doubled, ending CRLF.CRLF (as smtplib.SMTP.data)."""
    body = _LEADING_DOT.sub(b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"
