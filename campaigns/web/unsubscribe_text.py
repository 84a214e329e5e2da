"""The words of the unsubscribe pages, in Italian and English, and the choice between them
(Accept-Language, or `?lang=` from the page's own switch)."""
from __future__ import annotations

LANGUAGES = ("it", "en")
DEFAULT = "en"

TEXT: dict[str, dict[str, str]] = {
    "it": {
        "title": "Annulla l'iscrizione",
        "intro": "Non vuoi più ricevere i messaggi di {sender} all'indirizzo {address}?",
        "choose": "Scegli che cosa non vuoi più ricevere:",
        "this_list": "Solo la lista «{list}»",
        "this_list_plain": "Solo questa lista",
        "everything": "Tutte le newsletter e le comunicazioni promozionali di {sender}",
        "note": "Le fatture, le conferme d'ordine e gli altri messaggi che riguardano i tuoi "
                "acquisti continueranno ad arrivare.",
        "confirm": "Conferma la cancellazione",
        "done_title": "Iscrizione annullata",
        "done_list": "L'indirizzo {address} non riceverà più i messaggi della lista «{list}» "
                     "di {sender}.",
        "done_all": "L'indirizzo {address} non riceverà più newsletter né comunicazioni "
                    "promozionali da {sender}.",
        "done_when": "Registrato il {when} (UTC). Ha effetto subito, anche sui messaggi già in "
                     "coda.",
        "one_click": "Iscrizione annullata.",
        "not_found_title": "Link non valido",
        "not_found": "Questo link di cancellazione non è valido. Usa il link dell'ultimo "
                     "messaggio che hai ricevuto.",
        "forbidden_title": "Modulo scaduto",
        "forbidden": "Il modulo è scaduto o non è stato inviato da questa pagina. Riapri il "
                     "link del messaggio e conferma di nuovo.",
        "bad_title": "Richiesta non valida",
        "bad": "La richiesta non è valida.",
        "too_large": "La richiesta è troppo grande.",
        "other_language": "English",
    },
    "en": {
        "title": "Unsubscribe",
        "intro": "Don't want to receive messages from {sender} at {address} any more?",
        "choose": "Choose what you no longer want to receive:",
        "this_list": "Only the list “{list}”",
        "this_list_plain": "Only this list",
        "everything": "All newsletters and promotional mail from {sender}",
        "note": "Invoices, order confirmations and other messages about your purchases will "
                "still arrive.",
        "confirm": "Confirm unsubscribe",
        "done_title": "You are unsubscribed",
        "done_list": "{address} will no longer receive the list “{list}” from {sender}.",
        "done_all": "{address} will no longer receive newsletters or promotional mail from "
                    "{sender}.",
        "done_when": "Recorded on {when} (UTC). It takes effect at once, messages already "
                     "queued included.",
        "one_click": "Unsubscribed.",
        "not_found_title": "Link not valid",
        "not_found": "This unsubscribe link is not valid. Use the link in the latest message "
                     "you received.",
        "forbidden_title": "Form expired",
        "forbidden": "This form has expired or was not sent from this page. Open the link in "
                     "the message again and confirm.",
        "bad_title": "Bad request",
        "bad": "The request is not valid.",
        "too_large": "The request is too large.",
        "other_language": "Italiano",
    },
}


def choose_language(accept_language: str, asked: str | None = None) -> str:
    """`asked` (it or en) when given, else the first of Italian and English in the
    Accept-Language header by quality (the earlier on a tie), else English."""
    if asked in LANGUAGES:
        return asked
    ranked = []
    for position, part in enumerate(accept_language.split(",")[:30]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if primary in LANGUAGES and 0 < quality <= 1:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT
