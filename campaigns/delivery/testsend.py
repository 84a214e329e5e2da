"""`campaigns test-send`: rendered copies to a few addresses, outside the ledger."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import select

from campaigns.audience.contacts import normalise_address
from campaigns.content.compose import compose, contact_row, runtime_by_name
from campaigns.content.dkim import Signer
from campaigns.db import Database
from campaigns.errors import InputError, NotFound, RelayError
from campaigns.ledger.reads import get_campaign
from campaigns.models import Contact, ListMember
from campaigns.relays import OutgoingMessage, build_relay
from campaigns.settings import Settings


def send_test_copies(db: Database, settings: Settings, name: str, to: Sequence[str],
                     contact: str | None = None) -> list[str]:
    """Personalised as `contact` (default: the list's first member). Returns one line per
    copy; a refused copy is reported, not raised, so the others still go."""
    targets = []
    for raw in (part.strip() for item in to for part in item.split(",") if part.strip()):
        try:
            targets.append(normalise_address(raw))
        except ValueError as err:
            raise InputError(f"'{raw}': {err}", field="--to") from None
    with db.session() as s:
        rt = runtime_by_name(s, name)
        if contact:
            email, attributes, source_dir = contact_row(s, contact)
        else:
            row = s.execute(select(Contact.email, Contact.attributes, Contact.source_dir)
                            .join(ListMember, ListMember.contact_id == Contact.id)
                            .where(ListMember.list_id == get_campaign(s, name).list_id)
                            .order_by(Contact.id).limit(1)).first()
            if row is None:
                raise NotFound(f"campaign '{name}' has an empty list; give --contact")
            email, attributes, source_dir = row[0], dict(row[1] or {}), row[2]
    from campaigns.delivery.pools import first_relay
    config = settings.relay(first_relay(settings, rt.relay))
    relay, dkim = build_relay(config), Signer(settings.dkim if config.dkim else {})
    lines = []
    try:
        for target in targets:
            data, message_id = compose(rt, settings, delivery_id=None, address=email,
                                       attributes=attributes, source_dir=source_dir, to=target)
            message = OutgoingMessage(sender=rt.builder.envelope_from, recipient=target,
                                      data=dkim.sign(data), message_id=message_id,
                                      smtputf8=not target.isascii())
            try:
                result = relay.send(message)
                lines.append(f"sent to {target} (as {email}): {result.code} {result.text}")
            except RelayError as err:
                lines.append(f"NOT sent to {target}: {err}")
    finally:
        relay.close()
    return lines
