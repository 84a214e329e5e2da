"""MIME built by hand: parsed back with the standard library, every header and part must
come out as it went in, and nothing can inject a header."""
from __future__ import annotations

import email
import email.header
import email.policy
import re
from datetime import datetime, timezone
from email.message import EmailMessage

import pytest

from campaigns.errors import InputError
from campaigns.content.mime import Attachment, MessageBuilder, make_message_id, parse_address
from campaigns.content.rendering import build_context, compile_template

FROM = "Niccolò Rossi <news@bottega.example.it>"
SUBJECT = "Offerte di Natale: sconti più alti!"
TEXT = "Ciao Niccolò,\nle offerte di Natale sono arrivate.\n\nA presto!\n"
HTML = "<p>Ciao Niccolò,</p>\n<p>le offerte di <b>Natale</b> sono arrivate.</p>\n"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + bytes(range(256)) * 40


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def build(builder: MessageBuilder | None = None, **overrides: object) -> bytes:
    arguments: dict[str, object] = dict(
        to="Mario Bianchi <mario@example.com>", subject=SUBJECT, html=HTML, text=TEXT,
        message_id=make_message_id("d123", "bottega.example.it"),
        unsubscribe_url="https://bottega.example.it/u/123?t=abc")
    arguments.update(overrides)
    return (builder or MessageBuilder(from_addr=FROM)).build(**arguments)  # type: ignore[arg-type]


def assert_wire_format(data: bytes) -> None:
    """CRLF everywhere, no over-long line, header lines with encoded words <= 76."""
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        assert len(line) <= 998
        if b"=?" in line:
            assert len(line) <= 76, line
    for line in body.split(b"\r\n"):
        assert len(line) <= 76, line


def body_text(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


# -- headers -------------------------------------------------------------------------------

def test_headers_round_trip_with_accents() -> None:
    builder = MessageBuilder(from_addr=FROM, reply_to="Ufficio Stampa <stampa@bottega.example.it>",
                             extra_headers={"List-Id": "Newsletter <news.bottega.example.it>"})
    message_id = make_message_id("d123", "bottega.example.it")
    data = build(builder, to="Giòrgio Bianchi <giorgio@example.com>", message_id=message_id,
                 headers={"X-Campaign-Delivery": "123", "X-Nota": "è così"})
    assert_wire_format(data)
    message = parse(data)
    assert str(message["From"]) == FROM
    assert message["From"].addresses[0].display_name == "Niccolò Rossi"
    assert str(message["To"]) == "Giòrgio Bianchi <giorgio@example.com>"
    assert str(message["Reply-To"]) == "Ufficio Stampa <stampa@bottega.example.it>"
    assert str(message["Subject"]) == SUBJECT
    assert str(message["Message-ID"]) == message_id
    assert str(message["MIME-Version"]) == "1.0"
    assert str(message["List-Id"]) == "Newsletter <news.bottega.example.it>"
    assert str(message["List-Unsubscribe"]) == "<https://bottega.example.it/u/123?t=abc>"
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert str(message["X-Campaign-Delivery"]) == "123"
    assert str(message["X-Nota"]) == "è così"
    assert abs((message["Date"].datetime - datetime.now(timezone.utc)).total_seconds()) < 5
    assert builder.envelope_from == "news@bottega.example.it"
    assert not message.defects


def test_non_ascii_header_text_is_encoded_not_raw() -> None:
    data = build(to="Giòrgio <giorgio@example.com>")
    head = data.partition(b"\r\n\r\n")[0]
    assert head.isascii()
    assert b"=?utf-8?b?" in head


@pytest.mark.parametrize("subject", [
    "x" * 300,
    "Una newsletter con un oggetto molto lungo, più lungo di settantotto caratteri, "
    "con accenti: àèéìòù e simboli € ™ — e ancora testo per arrivare a capo più volte.",
    "Σωκράτης " * 20,
    "Emoji 🎄🎁✨ " * 10,
    "literal =?utf-8?q?not_encoded?= text",
    "tab\tinside",
    "",
    "A plain ASCII subject that is long enough to need folding at some space, twice "
    "maybe  with  double  spaces kept exactly as they were written by the author",
])
def test_subjects_round_trip_exactly(subject: str) -> None:
    data = build(subject=subject)
    assert_wire_format(data)
    assert str(parse(data)["Subject"]) == subject


@pytest.mark.parametrize("name", [
    "Mario Bianchi", "Rossi, Mario", 'Mario "Il Capo" Rossi', "Niccolò", "Forlì & Cesena",
    "Giòrgio Bianchi Con Un Nome Molto Lungo Davvero Lunghissimo Per Andare A Capo",
    "Niccolò Rossi (Ufficio Stampa)",
])
def test_display_names_round_trip(name: str) -> None:
    data = build(to=f'"{name.replace(chr(34), chr(92) + chr(34))}" <m@example.com>')
    assert_wire_format(data)
    address = parse(data)["To"].addresses[0]
    assert (address.display_name, address.addr_spec) == (name, "m@example.com")


def test_long_non_ascii_display_name_follows_rfc_2047() -> None:
    # Split into several encoded words; an RFC 2047 decoder drops the space between them.
    # (Python's display-name parser keeps it, a known quirk, so decode with the RFC one.)
    name = "Σωκράτης Παπαδόπουλος Καραμανλής Αλεξανδρόπουλος"
    message = email.message_from_bytes(build(to=f"{name} <s@example.com>"))
    decoded = str(email.header.make_header(email.header.decode_header(message["To"])))
    assert decoded == f"{name} <s@example.com>"


def test_smtputf8_address_is_emitted_raw_utf8() -> None:
    data = build(to="Niccolò <niccolò@esempio.it>")
    assert "To: =?utf-8?b?TmljY29sw7I=?= <niccolò@esempio.it>\r\n".encode() in data
    # message_from_bytes reads 8-bit headers as surrogate escapes: parse the UTF-8 text.
    message = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    assert str(message["To"]) == "Niccolò <niccolò@esempio.it>"
    assert message["To"].addresses[0].addr_spec == "niccolò@esempio.it"


def test_no_unsubscribe_headers_without_url_and_post_is_optional() -> None:
    assert "List-Unsubscribe" not in parse(build(unsubscribe_url=None))
    message = parse(build(MessageBuilder(from_addr=FROM, list_unsubscribe_post=False)))
    assert str(message["List-Unsubscribe"]) == "<https://bottega.example.it/u/123?t=abc>"
    assert "List-Unsubscribe-Post" not in message


def test_message_ids() -> None:
    first, second = make_message_id("d1", "example.it"), make_message_id("d1", "example.it")
    assert re.fullmatch(r"<d1\.[0-9a-f]{16}@example\.it>", first) and first != second
    assert make_message_id("d1", "bücher.example").endswith("@xn--bcher-kva.example>")
    assert str(parse(build(message_id="abc.1@example.it"))["Message-ID"]) == "<abc.1@example.it>"


@pytest.mark.parametrize("value, expected", [
    ("user@example.com", ("", "user@example.com")),
    ("  Mario <mario@example.com> ", ("Mario", "mario@example.com")),
    ('"Rossi, Mario \\"M\\"" <m@example.com>', ('Rossi, Mario "M"', "m@example.com")),
    ("Niccolò <niccolò@esempio.it>", ("Niccolò", "niccolò@esempio.it")),
    ("<bare@example.com>", ("", "bare@example.com")),
])
def test_parse_address(value: str, expected: tuple[str, str]) -> None:
    assert parse_address(value, field="to") == expected


@pytest.mark.parametrize("value", [
    "", "no-at-sign", "@example.com", "user@", "a@b@c", "two words@example.com",
    "Mario <mario@example.com", "user@.example.com", "user@example..com",
    "mario@example.com\r\nBcc: victim@example.com", "Mario\n <m@example.com>",
])
def test_parse_address_rejects(value: str) -> None:
    with pytest.raises(InputError) as err:
        parse_address(value, field="to")
    assert err.value.field == "to"


# -- header injection ---------------------------------------------------------------------

@pytest.mark.parametrize("overrides, field", [
    ({"to": "m@example.com\r\nBcc: victim@example.com"}, "to"),
    ({"subject": "Ciao\r\nBcc: victim@example.com"}, "subject"),
    ({"subject": "Ciao\nBcc: victim@example.com"}, "subject"),
    ({"subject": "Ciao\rBcc: victim@example.com"}, "subject"),
    ({"message_id": "<a@b>\r\nBcc: victim@example.com"}, "message_id"),
    ({"message_id": "<a b@c>"}, "message_id"),
    ({"unsubscribe_url": "https://u.example/x\r\nBcc: victim@example.com"}, "unsubscribe_url"),
    ({"unsubscribe_url": "https://u.example/x> <mailto:x@y"}, "unsubscribe_url"),
    ({"headers": {"X-Tag": "a\r\nBcc: victim@example.com"}}, "headers"),
    ({"headers": {"X-Tag\r\nBcc": "victim@example.com"}}, "headers"),
    ({"headers": {"X-Tag: x": "y"}}, "headers"),
    ({"headers": {"Bcc": "victim@example.com"}}, "headers"),
    ({"headers": {"content-type": "text/plain"}}, "headers"),
])
def test_header_injection_is_refused(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        build(**overrides)
    assert err.value.field == field


@pytest.mark.parametrize("arguments, field", [
    ({"from_addr": "news@example.it\r\nBcc: victim@example.com"}, "from_addr"),
    ({"from_addr": FROM, "reply_to": "r@example.it\nBcc: victim@example.com"}, "reply_to"),
    ({"from_addr": FROM, "extra_headers": {"List-Id": "x\r\nBcc: victim@example.com"}},
     "extra_headers"),
    ({"from_addr": FROM, "extra_headers": {"Subject": "x"}}, "extra_headers"),
])
def test_builder_refuses_injection_in_shared_headers(arguments: dict[str, object],
                                                      field: str) -> None:
    with pytest.raises(InputError) as err:
        MessageBuilder(**arguments)  # type: ignore[arg-type]
    assert err.value.field == field


def test_a_rendered_subject_cannot_inject() -> None:
    template = compile_template("t", "Ciao {{ contact.name }}", "<p>x</p>", None)
    ctx = build_context(email="a@example.com", attributes={"name": "Mario\r\nBcc: victim@example.com"},
                        campaign_name="c", unsubscribe_url="https://u.example/x")
    data = build(subject=template.render(ctx).subject)
    message = parse(data)
    assert "Bcc" not in message
    assert str(message["Subject"]) == "Ciao Mario Bcc: victim@example.com"


# -- bodies -------------------------------------------------------------------------------

def test_alternative_parts_decode_to_the_rendered_text() -> None:
    data = build()
    assert_wire_format(data)
    message = parse(data)
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    for part in (plain, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert body_text(plain) == TEXT
    assert body_text(html) == HTML


@pytest.mark.parametrize("text", [
    "no line break at all " * 10,
    ".\nline with only a dot above\n..two dots\n",
    "From the desk of Mario\nFrom here too\n",
    "x" * 75 + ".after a soft break\n" + "y" * 75 + "From after a soft break",
    "x" * 74 + "è.after an escape\n" + "=" * 40 + "\n",
    "." + "a" * 100 + "\nFrom " + "b" * 100,      # protection pushes a full line past 76
    "." + "a" * 71 + "èèè" + "b" * 10,         # ... and the re-fold must not split "=XX"
    "." + "a" * 74 + "." + "b" * 80,
    "trailing spaces   \ntrailing tab\t\n  \n",
    "windows\r\nline\r\nbreaks\rand old mac\n",
    "",
])
def test_quoted_printable_is_valid_and_safe(text: str) -> None:
    data = build(text=text, html=text)
    assert_wire_format(data)
    body = data.partition(b"\r\n\r\n")[2]
    for line in body.split(b"\r\n"):
        assert not line.startswith(b".") and not line.startswith(b"From "), line
        assert not line.endswith((b" ", b"\t")), line
    plain, html = parse(data).iter_parts()
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert body_text(plain) == body_text(html) == expected


def test_boundaries_are_random() -> None:
    first, second = parse(build()), parse(build())
    assert first.get_boundary() != second.get_boundary()


def test_attachments_round_trip_byte_exact() -> None:
    attachments = [
        Attachment("fattura_n°12.pdf", PDF),
        Attachment("listino prezzi.csv", "prodotto;prezzo\nPanettone;12,00 €\n".encode()),
        Attachment("dati.bin", bytes(range(256)) * 3, content_type="application/x-custom"),
        Attachment("senza-estensione", b"abc"),
        Attachment("un nome di file molto lungo con accenti àèìòù e più parole ancora.pdf", PDF),
    ]
    data = build(attachments=attachments)
    assert_wire_format(data)
    message = parse(data)
    assert message.get_content_type() == "multipart/mixed"
    alternative, *files = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html = alternative.iter_parts()
    assert (body_text(plain), body_text(html)) == (TEXT, HTML)
    assert [(part.get_filename(), part.get_content_type(), part.get_content_disposition())
            for part in files] == [
        ("fattura_n°12.pdf", "application/pdf", "attachment"),
        ("listino prezzi.csv", "text/csv", "attachment"),
        ("dati.bin", "application/x-custom", "attachment"),
        ("senza-estensione", "application/octet-stream", "attachment"),
        (attachments[4].filename, "application/pdf", "attachment")]
    for part, attachment in zip(files, attachments):
        assert part.get_payload(decode=True) == attachment.content
        assert part["Content-Transfer-Encoding"] == "base64"
    assert "filename*=utf-8''fattura_n%C2%B012.pdf" in data.decode()


def test_attachment_parts_are_reused_across_messages() -> None:
    builder = MessageBuilder(from_addr=FROM)
    attachment = Attachment("fattura.pdf", PDF)
    first = build(builder, attachments=[attachment], to="a@example.com")
    second = build(builder, attachments=[attachment], to="b@example.com")
    assert parse(first).get_payload()[1].get_payload(decode=True) == PDF
    assert parse(second).get_payload()[1].get_payload(decode=True) == PDF


@pytest.mark.parametrize("attachment", [
    Attachment("bad\r\nname.pdf", b"x"),
    Attachment("", b"x"),
    Attachment("a.pdf", b"x", content_type="application/pdf\r\nBcc: v@example.com"),
    Attachment("a.pdf", b"x", content_type="not a type"),
])
def test_bad_attachments_are_refused(attachment: Attachment) -> None:
    with pytest.raises(InputError) as err:
        build(attachments=[attachment])
    assert err.value.field == "attachments"


def test_render_and_build_a_newsletter_end_to_end() -> None:
    template = compile_template(
        "natale", "{{ contact.first_name }}, offerte di Natale: sconti più alti!",
        "<h1>Ciao {{ contact.first_name }}</h1>\n<p>Offerte per {{ contact.city }}.</p>\n"
        '<p><a href="{{ unsubscribe_url }}">Disiscriviti</a></p>', None)
    ctx = build_context(email="niccolo@example.it", attributes={"first_name": "Niccolò",
                                                                   "city": "Forlì"},
                        campaign_name="Natale", unsubscribe_url="https://u.example.it/u/1")
    rendered = template.render(ctx)
    data = build(to="Niccolò <niccolo@example.it>", subject=rendered.subject, html=rendered.html,
                 text=rendered.text, unsubscribe_url="https://u.example.it/u/1")
    message = parse(data)
    plain, html = message.iter_parts()
    assert str(message["Subject"]) == "Niccolò, offerte di Natale: sconti più alti!"
    assert body_text(plain) == ("Ciao Niccolò\n\nOfferte per Forlì.\n\n"
                                "Disiscriviti (https://u.example.it/u/1)")
    assert body_text(html) == rendered.html
