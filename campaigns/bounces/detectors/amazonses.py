"""Amazon SES notifications delivered by e-mail (SNS): a JSON document in the body.

    {"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":
     [{"emailAddress":"x@example.jp","action":"failed","status":"5.1.1",
       "diagnosticCode":"smtp; 550 5.1.1 user unknown"}], ...}, "mail":{...}}
"""
from __future__ import annotations

import json
import re
from typing import Any

from campaigns.bounces.detectors.base import Finding, one_line
from campaigns.bounces.status import find_reply_code, find_status

_JSON_RE = re.compile(r"\{.*\}", re.DOTALL)
_WRAP_RE = re.compile(r"!\n ")     # SNS e-mail wraps long lines as "!\n "
_TYPE_RE = re.compile(r"^\s*smtp\s*;\s*", re.IGNORECASE)


def detect(message: Any) -> list[Finding] | None:
    """Findings of an SES bounce, complaint or delivery notification, or None."""
    if "notificationType" not in message.full_text and '"eventType"' not in message.full_text:
        return None
    doc = _document(message.full_text)
    if not doc:
        return None
    kind = str(doc.get("notificationType") or doc.get("eventType") or "").lower()
    if kind == "bounce":
        return [_bounced(r, doc["bounce"]) for r in doc["bounce"].get("bouncedRecipients", [])]
    if kind == "complaint":
        body = doc["complaint"]
        feedback = str(body.get("complaintFeedbackType") or "abuse")
        return [Finding(recipient=r.get("emailAddress"), hint="feedback", feedback_type=feedback)
                for r in body.get("complainedRecipients", [])]
    if kind == "delivery":
        body = doc["delivery"]
        return [Finding(recipient=r, action="delivered", status="2.6.0",
                        diagnostic=str(body.get("smtpResponse", "")))
                for r in body.get("recipients", [])]
    return None


def _document(text: str) -> dict[str, Any] | None:
    m = _JSON_RE.search(_WRAP_RE.sub("", text))
    if not m:
        return None
    try:
        doc = json.loads(m.group(0))
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("Message"), str):
        try:
            doc = json.loads(doc["Message"])        # an SNS envelope around the notification
        except ValueError:
            return None
    return doc if isinstance(doc, dict) else None


def _bounced(recipient: dict[str, Any], _bounce: dict[str, Any]) -> Finding:
    diagnostic = one_line(_TYPE_RE.sub("", str(recipient.get("diagnosticCode", ""))))
    status = str(recipient.get("status") or "") or find_status(diagnostic)
    return Finding(recipient=recipient.get("emailAddress"), diagnostic=diagnostic,
                   status=status or None, reply_code=find_reply_code(diagnostic),
                   action=str(recipient.get("action") or "failed"))
