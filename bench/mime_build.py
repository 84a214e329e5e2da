"""Cost per message of building MIME: ``email.message.EmailMessage`` vs ``MessageBuilder``.

Both sides render the same compiled ~5.7 KB HTML newsletter (two personalised fields, text
part derived from the HTML) for N contacts and produce the bytes handed to SMTP DATA; the
only difference is how the MIME message is built. Figures are CPU time of this process per
message, medians of 3 rounds in which the variants take turns. Run:

    .venv/bin/python bench/mime_build.py [N]
"""
from __future__ import annotations

import email.policy
import email.utils
import statistics
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage

from campaigns.content.mime import MessageBuilder, make_message_id
from campaigns.content.rendering import Rendered, build_context, compile_template

_ITEM = """
<tr><td style="padding:12px 24px;border-bottom:1px solid #eeeeee;font-family:Helvetica,Arial,sans-serif">
  <h2 style="margin:0 0 6px 0;font-size:18px;color:#b22222">{title}</h2>
  <p style="margin:0;font-size:14px;line-height:20px;color:#333333">{body}</p>
  <p style="margin:8px 0 0 0"><a href="https://shop.example.it/natale/{slug}?utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=natale"
     style="color:#ffffff;background:#b22222;padding:6px 12px;border-radius:4px;text-decoration:none">Scopri l'offerta</a></p>
</td></tr>"""

_ITEMS = "".join(_ITEM.format(title=title, slug=slug, body=body) for title, slug, body in [
    ("Panettoni artigianali: -30%", "panettoni",
     "Lievitazione naturale di 36 ore, canditi di Sicilia e burro di montagna. Spedizione "
     "gratuita sopra i 49 &euro; e consegna garantita entro il 22 dicembre."),
    ("Vini rossi delle Langhe", "vini",
     "Barolo, Barbaresco e Nebbiolo dalle nostre cantine partner: confezioni regalo da 3 e 6 "
     "bottiglie con biglietto personalizzato e cassetta in legno."),
    ("Idee regalo sotto i 30 &euro;", "regali",
     "Torroni, cioccolato di Modica, miele di castagno e tisane invernali: piccoli pensieri "
     "per colleghi, amici e parenti, impacchettati a mano."),
    ("Presepi e decorazioni", "decorazioni",
     "Statuine di San Gregorio Armeno, ghirlande di agrifoglio e candele profumate "
     "alla cannella: tutto per la casa, con reso gratuito entro 30 giorni."),
    ("Cesti natalizi aziendali", "cesti",
     "Per le aziende: cesti personalizzati con logo, fattura elettronica e consegna a "
     "indirizzi multipli in tutta Italia. Richiedi un preventivo gratuito."),
])

HTML = """<!DOCTYPE html>
<html lang="it"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{ campaign.name }}</title>
<style>body{margin:0;padding:0;background:#f4f4f4} a{color:#b22222} @media (max-width:600px){.c{width:100%!important}}</style>
</head><body style="margin:0;padding:0;background:#f4f4f4">
<span style="display:none;font-size:1px;color:#f4f4f4">Sconti fino al 30% su panettoni, vini e cesti.</span>
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f4f4f4"><tr><td align="center">
<table role="presentation" class="c" width="600" cellpadding="0" cellspacing="0" style="background:#ffffff;margin:24px 0">
<tr><td style="padding:24px;text-align:center;background:#b22222">
  <a href="https://shop.example.it/"><img src="https://cdn.example.it/logo.png" width="180" alt="Bottega Rossi" style="display:block;margin:0 auto;border:0"></a>
</td></tr>
<tr><td style="padding:24px 24px 8px 24px;font-family:Helvetica,Arial,sans-serif">
  <h1 style="margin:0;font-size:24px;color:#222222">Ciao {{ contact.first_name }}, &egrave; arrivato il Natale!</h1>
  <p style="font-size:15px;line-height:22px;color:#333333">Quest'anno abbiamo preparato per te, e per tutti i nostri clienti di
  {{ contact.city }}, una selezione di prodotti tipici con sconti pi&ugrave; alti che mai. Le offerte sono valide fino al
  24 dicembre o fino a esaurimento scorte: non aspettare l'ultimo momento!</p>
</td></tr>""" + _ITEMS + """
<tr><td style="padding:24px;font-family:Helvetica,Arial,sans-serif;font-size:14px;line-height:20px;color:#333333">
  <p>Hai domande? Rispondi a questa e-mail oppure chiamaci al <a href="tel:+390212345678">02 1234 5678</a>, dal luned&igrave;
  al venerd&igrave; dalle 9 alle 18. Il nostro servizio clienti parla italiano, inglese e tedesco.</p>
  <p>Buone feste,<br>Niccol&ograve; e tutto lo staff di Bottega Rossi</p>
</td></tr>
<tr><td style="padding:16px 24px;background:#eeeeee;font-family:Helvetica,Arial,sans-serif;font-size:11px;line-height:16px;color:#777777">
  <p style="margin:0">Bottega Rossi S.r.l. &middot; Via Roma 1, 20121 Milano &middot; P.IVA 01234567890</p>
  <p style="margin:8px 0 0 0">Ricevi questa e-mail perch&eacute; sei iscritto alla nostra newsletter.
  <a href="{{ unsubscribe_url }}" style="color:#777777">Annulla l'iscrizione</a> con un clic.</p>
</td></tr>
</table></td></tr></table></body></html>
"""

SUBJECT = "{{ contact.first_name }}, offerte di Natale: sconti più alti!"

# The "1.5 KB personalised message": an order confirmation, two personalised fields
# (about 1.5 KB on the wire with its text part and headers).
SMALL_HTML = """<html lang="it"><body style="font-family:Helvetica,Arial,sans-serif;color:#333333">
<p>Gentile {{ contact.first_name }},</p>
<p>grazie per il tuo ordine: lo stiamo preparando nel nostro magazzino e lo consegneremo al
punto di ritiro di {{ contact.city }} entro tre giorni lavorativi.</p>
<p>Puoi seguire la spedizione dalla tua <a href="https://shop.example.it/ordini">area clienti</a>.</p>
<p>A presto,<br>Bottega Rossi</p>
</body></html>
"""
SMALL_SUBJECT = "{{ contact.first_name }}, il tuo ordine è confermato"
MESSAGES = {"newsletter": (SUBJECT, HTML), "small": (SMALL_SUBJECT, SMALL_HTML)}
FROM = "Bottega Rossi <newsletter@bottega.example.it>"


def _contexts(count: int) -> list[dict[str, object]]:
    return [build_context(email=f"cliente{i}@example.com",
                          attributes={"first_name": ("Niccolò", "Giulia", "Luca")[i % 3],
                                      "city": ("Milano", "Torino", "Forlì")[i % 3]},
                          campaign_name="Natale",
                          unsubscribe_url=f"https://bottega.example.it/u/{i:08d}?t=abcdef")
            for i in range(count)]


def build_with_email_message(rendered: Rendered, to: str, unsub: str, index: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = to
    msg["Subject"] = rendered.subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = make_message_id(f"d{index}", "bottega.example.it")
    msg["List-Unsubscribe"] = f"<{unsub}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Campaign-Delivery"] = str(index)
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP)


def main(count: int) -> None:
    template = compile_template("natale", SUBJECT, HTML, None)
    builder = MessageBuilder(from_addr=FROM)
    contexts = _contexts(count)
    print(f"HTML template {len(HTML.encode())} bytes; N={count} messages per variant")

    def with_email_message() -> None:
        for i, ctx in enumerate(contexts):
            contact = ctx["contact"]
            build_with_email_message(template.render(ctx), contact["email"],  # type: ignore[index]
                                     str(ctx["unsubscribe_url"]), i)

    def with_builder() -> None:
        for i, ctx in enumerate(contexts):
            rendered = template.render(ctx)
            builder.build(to=ctx["contact"]["email"], subject=rendered.subject,  # type: ignore[index]
                          html=rendered.html, text=rendered.text,
                          message_id=make_message_id(f"d{i}", "bottega.example.it"),
                          unsubscribe_url=str(ctx["unsubscribe_url"]),
                          headers={"X-Campaign-Delivery": str(i)})

    def render_only() -> None:
        for ctx in contexts:
            template.render(ctx)

    variants = {"render only": render_only,
                "render + EmailMessage build + serialise": with_email_message,
                "render + MessageBuilder.build": with_builder}
    results = _time(variants, count)
    for name, ms in results.items():
        print(f"{name:42s} {ms:7.3f} ms/message  {1000 / ms:8.0f} messages/s")
    render = results["render only"]
    slow = results["render + EmailMessage build + serialise"]
    fast = results["render + MessageBuilder.build"]
    print(f"{'MIME build alone, EmailMessage':42s} {slow - render:7.3f} ms/message")
    print(f"{'MIME build alone, MessageBuilder':42s} {fast - render:7.3f} ms/message")
    print(f"ratio EmailMessage / MessageBuilder, with render: {slow / fast:.1f}x; "
          f"MIME build alone: {(slow - render) / (fast - render):.1f}x")


def _time(variants: dict[str, Callable[[], None]], count: int,
          rounds: int = 3) -> dict[str, float]:
    """Median CPU time (this process) in ms per message; the variants take turns in each
    round so that a busy neighbour on the machine weighs on all of them alike."""
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.process_time()
            fn()
            runs[name].append((time.process_time() - start) * 1000 / count)
    return {name: statistics.median(times) for name, times in runs.items()}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
