"""The API's lists and contacts (campaigns.web.api builds the app): the twins of `contacts
lists` and `contacts import`. Both a JSON batch and a CSV upload go through the one importer
(campaigns.audience.contacts), so they validate and merge exactly as the CLI does and reject
bad rows one by one, the rest imported."""
from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from campaigns.web.common import Deps, Problem
from campaigns.web.keys import KeyInfo

MAX_CONTACTS = 10_000
Value = Union[str, int, float, bool, None]


class ContactIn(BaseModel):
    email: str = Field(..., max_length=320)
    attributes: dict[str, Value] = Field(default_factory=dict)


class ContactsIn(BaseModel):
    contacts: list[ContactIn] = Field(..., max_length=MAX_CONTACTS)


class Rejected(BaseModel):
    index: Optional[int] = Field(None, description="the contact's position in the request")
    line: Optional[int] = Field(None, description="the CSV line (the header is 1)")
    field: str
    value: str
    reason: str


class ImportOut(BaseModel):
    list: str
    imported: int
    updated: int
    unchanged: int
    duplicates: int
    rejected: list[Rejected]
    warnings: list[str]


def _cell(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _summary(name: str, reports: list[tuple[Any, list[int] | None]]) -> dict[str, Any]:
    out: dict[str, Any] = {"list": name, "imported": 0, "updated": 0, "unchanged": 0,
                           "duplicates": 0, "rejected": [], "warnings": []}
    for report, indexes in reports:
        for field in ("imported", "updated", "unchanged", "duplicates"):
            out[field] += getattr(report, field)
        out["warnings"] += [w for w in report.warnings if w not in out["warnings"]]
        for e in report.errors:
            where = ({"index": indexes[e.line - 2]} if indexes is not None
                     and 0 <= e.line - 2 < len(indexes) else {"line": e.line})
            out["rejected"].append({**where, "field": e.field, "value": e.value,
                                    "reason": e.reason})
    return out


def _imported(d: Deps, path: Path, name: str, shown: str) -> Any:
    """import_contacts on a temporary file; its errors name `shown`, never the server's path."""
    from campaigns.audience.contacts import import_contacts
    from campaigns.errors import InputError
    try:
        return import_contacts(d.db, path, name, from_file_dir=False)
    except InputError as err:
        raise Problem(422, "invalid input", str(err).replace(str(path), shown), errors=[
            {"field": err.field or "body", "line": err.line,
             "reason": str(err).replace(str(path), shown)}]) from None


def register(api: FastAPI, d: Deps) -> None:
    @api.get("/lists", tags=["lists"], response_model=list[dict[str, Any]])
    def lists(key: KeyInfo = d.need("read")) -> list[dict[str, Any]]:
        """Every list with its member count."""
        from campaigns.audience.lists import list_lists
        return list_lists(d.db)

    @api.post("/lists/{name}/contacts", tags=["lists"], response_model=ImportOut)
    def contacts_upsert(name: str, body: ContactsIn,
                        key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Add or update contacts in list NAME (created when missing). Attributes given
        overwrite same-named ones; attributes not given are kept. Each bad contact is
        rejected with its index and why; the others are imported."""
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, contact in enumerate(body.contacts):
            groups.setdefault(tuple(sorted(contact.attributes)), []).append(i)
        reports = []
        with tempfile.TemporaryDirectory(prefix="campaigns-api-") as tmp:
            for n, (names, indexes) in enumerate(groups.items()):
                if any(not a.strip() or a.strip().lower() in ("email", "e-mail") for a in names):
                    raise Problem(422, "invalid input", errors=[{
                        "field": "contacts.attributes",
                        "reason": "an attribute name is empty or 'email'"}])
                path = Path(tmp) / f"contacts-{n}.csv"
                with path.open("w", encoding="utf-8", newline="") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(["email", *names])
                    for i in indexes:
                        c = body.contacts[i]
                        writer.writerow([c.email, *(_cell(c.attributes[a]) for a in names)])
                reports.append((_imported(d, path, name, "contacts"), indexes))
        return _summary(name, reports)

    @api.post("/lists/{name}/contacts.csv", tags=["lists"], response_model=ImportOut,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "text/csv": {"schema": {"type": "string"}}}}})
    async def contacts_csv(name: str, request: Request,
                           key: KeyInfo = d.need("manage")) -> dict[str, Any]:
        """Import a CSV (as `contacts import`: a header line, an `email` column, every
        other column an attribute). Bad rows are rejected with their line; the others are
        imported. A file that cannot be read at all is a 422 and changes nothing."""
        from starlette.concurrency import run_in_threadpool
        data = await request.body()

        def run() -> dict[str, Any]:
            with tempfile.TemporaryDirectory(prefix="campaigns-api-") as tmp:
                path = Path(tmp) / "upload.csv"
                path.write_bytes(data)
                report = _imported(d, path, name, "upload.csv")
            return _summary(name, [(report, None)])
        return await run_in_threadpool(run)
