"""Console relay: prints one line per message to standard output and sends nothing, for trials
("what would go out, to whom, with which subject") without a relay or a folder.

  console[trial] <id@example.org> bounces+1@example.org -> alice@example.com
      "Offerta speciale è qui – 20%" 14.2 kB, attachments: listino.pdf

(on one line). The subject is decoded; the line never holds the body.
"""
from __future__ import annotations

import email.policy
import sys
from email.message import EmailMessage
from email.parser import BytesParser

from campaigns.relays.base import OutgoingMessage, SendResult
from campaigns.settings import RelayConfig


def summary(relay_name: str, message: OutgoingMessage) -> str:
    """The one line printed for `message`."""
    msg = BytesParser(policy=email.policy.default).parsebytes(message.data)
    subject = " ".join(str(msg.get("subject", "")).split())
    names = [p.get_filename() or "unnamed" for p in msg.walk()
             if isinstance(p, EmailMessage) and p.get_content_disposition() == "attachment"]
    files = f", attachments: {', '.join(names)}" if names else ""
    return (f"console[{relay_name}] {message.message_id} {message.sender} -> {message.recipient} "
            f"\"{subject}\" {len(message.data) / 1000:.1f} kB{files}")


class ConsoleRelay:
    """The Relay contract (campaigns.relays.base.Relay) over standard output."""

    def __init__(self, config: RelayConfig) -> None:
        self.name = config.name

    def open(self) -> None:
        """Nothing to open."""

    def send(self, message: OutgoingMessage) -> SendResult:
        """Print the message's summary line; never refuses."""
        print(summary(self.name, message), file=sys.stdout, flush=True)
        return SendResult(250, "2.0.0", "printed to standard output, not sent")

    def close(self) -> None:
        """Nothing to close."""

    def check(self) -> list[str]:
        return ["console relay: each message is printed to standard output as one line, "
                "nothing is sent"]
