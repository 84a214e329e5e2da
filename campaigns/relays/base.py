"""The relay contract every backend implements (SMTP, file, console, SES, SendGrid, Mailgun, Postmark).

A relay object belongs to one worker process and is reused for every message that process
sends (one persistent connection per process for SMTP). It imports neither Celery nor
SQLAlchemy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    sender: str            # envelope MAIL FROM (bare address)
    recipient: str         # envelope RCPT TO (bare address)
    data: bytes            # the whole RFC 5322 message, CRLF line endings
    message_id: str        # the Message-ID header value, with angle brackets
    smtputf8: bool = False # an address needs SMTPUTF8


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the relay answered when it accepted the message."""
    code: int              # SMTP reply code (250) or the provider's equivalent
    enhanced: str | None   # RFC 3463 enhanced status ("2.0.0") when given
    text: str              # reply text, single line
    provider_id: str | None = None  # the relay's own id for the message, when it returns one


class Relay(Protocol):
    name: str

    def open(self) -> None:
        """Connect (and authenticate) if not connected. Raises RelayConfigError for failures a
        person must fix (bad credentials, TLS, name not resolved), RelayTemporaryError for
        failures that may pass (refused, timeout, 421)."""

    def send(self, message: OutgoingMessage) -> SendResult:
        """Hand one message to the relay, opening the connection when needed.

        Returns the acceptance reply. Raises RelayTemporaryError (4xx, connection lost before
        the body was sent; reconnect was tried), RelayPermanentError (5xx for this recipient or
        message), RelayConfigError (our relay refuses us: auth, relaying denied, TLS),
        RelayInDoubt (connection lost after the body was sent, before the reply). An error
        carries the server's own reply (`code`, `enhanced`, `text`) when one was said, and the
        `category`/`reason` when the relay knows what the failure means (an HTTP API's
        status or error field), never an invented SMTP code; a RelayTemporaryError says
        `relay_down` when the relay itself could not be reached or failed."""

    def close(self) -> None:
        """Close the connection politely (QUIT); never raises."""

    def check(self) -> list[str]:
        """Connect, greet, TLS, authenticate and quit without sending mail. Returns the steps
        that succeeded as human-readable lines; raises a RelayError naming the failing step."""
