"""The contact attributes that campaigns about to send rely on, and the contacts an import
changed under them.

Contacts are global: an address is one contact whatever lists it is in, and an import merges
its attributes by column (a column of the file overwrites, a column the file lacks is kept).
So importing list B can change `city` for a contact of list A whose scheduled or running
campaign writes `{{ contact.city }}`. The import goes ahead (the file is the newer data) and
its report says what it changed under whom: "3 contacts of list 'clienti' used by campaign
'natale' had attribute 'city' changed"."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, CampaignStatus, ContactList, ListMember, Schedule, Template

#: campaigns that will still render messages: their template reads the contacts as they are
WATCHED = (CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.WAITING,
           CampaignStatus.PAUSED)

# contact.city, contact["city"], contact['city'], contact.get("city")
_USE = re.compile(r"""\bcontact\s*(?:\.\s*get\s*\(\s*(['"])(.+?)\1|\[\s*(['"])(.+?)\3\s*\]"""
                  r"""|\.\s*([A-Za-z_]\w*))""")


def attributes_used(*sources: str) -> frozenset[str]:
    """The attribute names a template's sources (subject, HTML, text) read from `contact`."""
    return frozenset(m[2] or m[4] or m[5] for source in sources for m in _USE.finditer(source))


@dataclass(frozen=True)
class Watcher:
    """A campaign (or a schedule's future runs) reading `attributes` of the members of a list."""

    list_id: int
    list_name: str
    user: str                 # "campaign 'natale'" or "schedule 'weekly'"
    attributes: frozenset[str]


class AttributeWatch:
    """Collects, over one import, which watched attributes it changed for which contacts."""

    def __init__(self, watchers: list[Watcher]) -> None:
        self.by_list: dict[int, list[Watcher]] = {}
        for w in watchers:
            self.by_list.setdefault(w.list_id, []).append(w)
        self.names = frozenset().union(*(w.attributes for w in watchers))
        self.hits: dict[tuple[str, str, str], set[int]] = {}

    @classmethod
    def load(cls, session: Session) -> AttributeWatch:
        """The watchers of the moment: campaigns in a WATCHED status and every schedule."""
        sources = (Template.subject, Template.html, Template.text)
        campaigns = (select(Campaign.name, ContactList.id, ContactList.name, *sources)
                     .join(ContactList, ContactList.id == Campaign.list_id)
                     .join(Template, Template.id == Campaign.template_id)
                     .where(Campaign.status.in_([s.value for s in WATCHED])))
        schedules = (select(Schedule.name, ContactList.id, ContactList.name, *sources)
                     .join(ContactList, ContactList.name == Schedule.list_name)
                     .join(Template, Template.name == Schedule.template))
        watchers = [Watcher(list_id, list_name, f"{kind} '{name}'", used)
                    for kind, stmt in (("campaign", campaigns), ("schedule", schedules))
                    for name, list_id, list_name, *texts in session.execute(stmt)
                    if (used := attributes_used(*(t or "" for t in texts)))]
        return cls(watchers)

    def changed(self, before: Mapping[str, Any], columns: Mapping[str, str]) -> set[str]:
        """Watched attributes the file's `columns` change: a value that was set, overwritten
        by a different one or blanked (filling an empty attribute is no change)."""
        return {name for name, value in columns.items()
                if name in self.names and before.get(name) not in (None, "")
                and before[name] != value}

    def note(self, session: Session, changed: dict[int, set[str]]) -> None:
        """Count the contacts (id -> changed attributes) that are members of watched lists."""
        if not changed:
            return
        rows = session.execute(select(ListMember.list_id, ListMember.contact_id)
                               .where(ListMember.list_id.in_(list(self.by_list)),
                                      ListMember.contact_id.in_(list(changed))))
        for list_id, contact_id in rows:
            for w in self.by_list[list_id]:
                for name in changed[contact_id] & w.attributes:
                    self.hits.setdefault((w.list_name, w.user, name), set()).add(contact_id)

    def warnings(self) -> list[str]:
        return [f"{len(ids)} contact{'s' if len(ids) != 1 else ''} of list '{list_name}' "
                f"used by {user} had attribute '{name}' changed"
                for (list_name, user, name), ids in sorted(self.hits.items())]
