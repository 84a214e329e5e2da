"""What a transactional message says, made ready to send: a message of the API (its stored
template rendered with its data, or its own subject and bodies) or of the SMTP gateway (the
original, as its author wrote it, with our delivery header on top). One per Sender: it keeps
the stored templates compiled, compiled again only when one changed."""
from __future__ import annotations

from typing import Any

from campaigns.content import original
from campaigns.content.compose import compile_stored, compose_message
from campaigns.content.rendering import CompiledTemplate
from campaigns.db import Database
from campaigns.errors import NotFound
from campaigns.ledger import messages as ledger_messages
from campaigns.ledger.reads import get_template
from campaigns.settings import Settings


class MessageComposer:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self._templates: dict[tuple[str, Any], CompiledTemplate] = {}

    def compose(self, msg: Any, delivery_id: int, address: str,
                origin: str) -> tuple[bytes, str, str]:
        """(bytes, Message-ID, envelope sender) of the message `msg`
        (campaigns.ledger.messages.Content) to `address`. Raises TemplateRenderError,
        InputError, NotFound (its stored original or template is gone)."""
        files = ledger_messages.attachments(self.db, msg.attachments_from) \
            if msg.attachments_from else []
        if origin == "smtp":     # the gateway's: the original, as its author wrote it
            if not files:
                raise NotFound("the original of this message is no longer stored")
            data = original.for_delivery(files[0][2], self.settings.secret_key, delivery_id)
            return data, (original.values(files[0][2], "message-id") or [""])[0], msg.from_addr
        template = self._template(msg.template) if msg.template else None
        return compose_message(msg, self.settings, delivery_id=delivery_id, address=address,
                               files=files, template=template)

    def _template(self, name: str) -> CompiledTemplate:
        """A stored template as it is now (compiled again only when it changed)."""
        with self.db.session() as s:
            stored = get_template(s, name)
            key = (name, stored.updated_at)
            if key not in self._templates:
                if len(self._templates) > 64:
                    self._templates.clear()
                self._templates[key] = compile_stored(stored)
        return self._templates[key]
