"""A recipient's attachment column can name only files under an attachment root: a hostile
CSV row never mails a file of the server, at preflight, at send time or in a test send."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from campaigns import lifecycle
from campaigns.content.attachments import AttachmentError, resolve
from campaigns.audience.contacts import import_contacts
from campaigns.models import Contact
from campaigns.settings import AttachmentPolicy
from campaigns.content.templates import add_template
from tests.helpers import ledger, parse

SECRET_FILE_TEXT = b"root:$6$not-for-mail"


def hostile_paths(tmp_path: Path) -> dict[str, str]:
    """value in a CSV of `tmp_path`/in -> the rule that refuses it. Made inside the test's
    folder where it can be."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "shadow").write_bytes(SECRET_FILE_TEXT)
    docs = tmp_path / "in" / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "link.pdf").unlink(missing_ok=True)
    (docs / "link.pdf").symlink_to(outside / "shadow")
    (docs / ".secret").write_bytes(SECRET_FILE_TEXT)
    fifo = docs / "pipe.pdf"
    if not fifo.exists():
        os.mkfifo(fifo)
    (docs / "huge.pdf").write_bytes(b"%PDF" + b"0" * 5000)
    return {"/proc/self/environ": "/proc", "/etc/shadow": "outside the attachment root",
            "../outside/shadow": "outside the attachment root",
            "docs/../../../../etc/passwd": "outside the attachment root",
            "~/.bashrc": "'~' is not expanded", "docs/link.pdf": "outside the attachment root",
            "docs/.secret": "hidden files", "docs/pipe.pdf": "not a regular file",
            "docs/huge.pdf": "over the limit", "/dev/zero": "/dev"}


POLICY = AttachmentPolicy(max_file_bytes=4096)


def test_each_hostile_path_is_refused_naming_row_path_and_rule(tmp_path: Path) -> None:
    for value, rule in hostile_paths(tmp_path).items():
        with pytest.raises(AttachmentError) as info:
            resolve(POLICY, "anna@example.test", "pdf", value, str(tmp_path / "in"))
        message = str(info.value)
        assert "anna@example.test" in message and value in message and rule in message, message


def test_files_under_the_root_and_configured_roots(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    pdf = tmp_path / "docs" / "fattura.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    assert resolve(POLICY, "a@x.test", "pdf", "docs/fattura.pdf", str(tmp_path)) == pdf.resolve()
    assert resolve(POLICY, "a@x.test", "pdf", str(pdf), str(tmp_path)) == pdf.resolve()
    # configured roots replace the CSV's folder
    roots = AttachmentPolicy(roots=(str(tmp_path / "docs"),))
    assert resolve(roots, "a@x.test", "pdf", str(pdf), "/somewhere/else") == pdf.resolve()
    assert resolve(roots, "a@x.test", "pdf", "fattura.pdf", None) == pdf.resolve()
    (tmp_path / "other.pdf").write_bytes(b"%PDF")
    with pytest.raises(AttachmentError, match="outside the attachment root"):
        resolve(roots, "a@x.test", "pdf", str(tmp_path / "other.pdf"), str(tmp_path))
    with pytest.raises(AttachmentError, match="no attachment root"):
        resolve(AttachmentPolicy(), "a@x.test", "pdf", str(pdf), None)


def _campaign(project: Any, rows: list[tuple[str, str]]) -> None:
    (project.root / "in").mkdir(exist_ok=True)
    csv_path = project.root / "in" / "fatture.csv"
    csv_path.write_text("email,first_name,pdf\n" + "".join(f"{a},N,{p}\n" for a, p in rows))
    import_contacts(project.ctx.db, csv_path, "fatture")
    (project.root / "f.html").write_text("<p>In allegato la fattura.</p>")
    add_template(project.ctx.db, "fattura", "La sua fattura", project.root / "f.html")
    lifecycle.create_campaign(project.ctx.db, project.ctx.settings, name="fat", list_name="fatture",
                              template="fattura", from_addr="Amministrazione <fatture@shop.test>",
                              attachment_column="pdf")


def _configure(project: Any) -> None:
    project.extra_toml = "[attachments]\nmax_file_bytes = 4096\n"
    project.write_config()


def test_preflight_refuses_every_hostile_row_and_mails_nothing(project: Any) -> None:
    _configure(project)
    hostile = hostile_paths(project.root)
    (project.root / "in" / "docs" / "ok.pdf").write_bytes(b"%PDF-1.4 ok")
    rows = [(f"h{i}@example.test", value) for i, value in enumerate(hostile)]
    _campaign(project, rows + [("ok@example.test", "docs/ok.pdf")])
    proc = project.cli("launch", "fat", check=False)
    assert proc.returncode == 1, proc.stdout
    for i, (value, rule) in enumerate(hostile.items()):
        line = next(ln for ln in proc.stderr.splitlines() if f"h{i}@example.test" in ln)
        assert value in line and rule in line, line
    out = project.cli("test-send", "fat", "--to", "me@shop.test", "--contact", "h1@example.test",
                      check=False)
    assert out.returncode != 0 and "outside the attachment root" in out.stderr
    assert not project.sink.received


def test_rows_changed_after_launch_fail_at_send_time_and_a_good_pdf_goes_out(project: Any) -> None:
    _configure(project)
    docs = project.root / "in" / "docs"
    docs.mkdir(parents=True)
    rows = [(f"h{i}@example.test", f"docs/f{i}.pdf") for i in range(10)]
    for i in range(10):
        (docs / f"f{i}.pdf").write_bytes(b"%PDF-1.4 " + str(i).encode())
    _campaign(project, rows + [("ok@example.test", "docs/f0.pdf")])
    project.cli("launch", "fat")            # preflight passes; nothing consumes yet
    hostile = hostile_paths(project.root)
    with project.ctx.db.session() as s:     # the rows turn hostile before the workers send
        for i, value in enumerate(hostile):
            s.execute(update(Contact).where(Contact.email == f"h{i}@example.test")
                      .values(attributes={"first_name": "N", "pdf": value}))
    project.workers(1)
    snap = project.wait_status("fat")
    assert snap["counts"]["failed"] == len(hostile) and snap["counts"]["sent"] == 1
    states = ledger(project, "fat")
    assert states["ok@example.test"][0] == "sent"
    assert [r.rcpt for r in project.sink.received] == ["ok@example.test"]
    [part] = list(parse(project.sink.received[0].data).iter_attachments())
    assert part.get_content() == b"%PDF-1.4 0"
    for received in project.sink.received:
        assert SECRET_FILE_TEXT not in received.data
    with project.ctx.db.session() as s:
        from sqlalchemy import select

        from campaigns.models import Delivery
        texts = dict(s.execute(select(Delivery.address, Delivery.reply_text)).all())
    for i, (value, rule) in enumerate(hostile.items()):
        assert rule in texts[f"h{i}@example.test"], texts[f"h{i}@example.test"]
