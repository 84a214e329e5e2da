"""RFC 3834 automatic responses (out of office, vacation). Bounces carry
"Auto-Submitted: auto-replied" too, so a message that looks like a bounce is not one."""
from __future__ import annotations

import re

from campaigns.bounces.detectors.base import Finding, find_address, is_robot
from campaigns.bounces.message import ReturnedMessage

_SUBJECT_RE = re.compile(
    r"^(auto(matic|matische)?[ -]?(reply|response|antwort|respuesta|risposta)|"
    r"out of (the )?office|vacation|away|abwesenheit|absence|absent|r[ée]ponse automatique|"
    r"respuesta autom[áa]tica|risposta automatica|fuera de la oficina|"
    r"自動返信|自动回复|自動応答|I am (currently )?(out|away)|on leave|holiday|auto:|"
    # localised out-of-office subjects (Outlook, Gmail, Notes in their languages)
    r"automatisch antwoord|autosvar|automaattinen vastaus|odpowied[źz] automatyczna|"
    r"resposta autom[áa]tica|abwesend|au(ss|ß)er haus|cong[ée]s|ferie|vacaciones)",
    re.IGNORECASE,
)
_BODY_RE = re.compile(r"out of (the )?office|on vacation|"
                      r"away from (the |my )?(office|desk|e-?mail)|"
                      r"limited access to (my )?e-?mail|I am (currently )?(out|away|on leave)|"
                      r"will (be )?(back|return)|return(ing)? (on|to the office)",
                      re.IGNORECASE)
_BOUNCE_RE = re.compile(r"undeliver|delivery (status|failure|failed|notification|report)|"
                        r"returned mail|failure notice|mail delivery|could not be delivered|"
                        r"error sending|not delivered|mail failure|delivery problem",
                        re.IGNORECASE)


def detect(message: ReturnedMessage) -> list[Finding] | None:
    """One "vacation" finding for the person who answered, or None."""
    sender = find_address(message.sender) or message.sender.strip()
    if message.fields or _BOUNCE_RE.search(message.subject) or is_robot(sender):
        return None
    marked = (message.header("Auto-Submitted").lower().startswith("auto-replied")
              or message.header("X-Autoreply") or message.header("X-Autorespond")
              or message.header("Precedence").lower() == "auto_reply"
              or message.header("X-MS-Exchange-Inbox-Rules-Loop"))
    if not (marked or _SUBJECT_RE.search(message.subject) or (
            message.header("X-Auto-Response-Suppress") and _BODY_RE.search(message.text))):
        return None
    recipient = find_address(message.header("From")) or find_address(message.header("Reply-To"))
    return [Finding(recipient=recipient, diagnostic=message.subject, hint="vacation")]
