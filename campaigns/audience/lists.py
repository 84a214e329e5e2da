"""Contact lists as a whole: their names and sizes (`contacts lists`, GET /api/v1/lists)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from campaigns.db import Database
from campaigns.models import ContactList, ListMember


def list_lists(db: Database) -> list[dict[str, Any]]:
    """Every list with its member count, by name."""
    with db.session() as s:
        rows = s.execute(select(ContactList.name, func.count(ListMember.contact_id))
                         .outerjoin(ListMember, ListMember.list_id == ContactList.id)
                         .group_by(ContactList.name).order_by(ContactList.name)).all()
    return [{"name": name, "members": int(n)} for name, n in rows]
