"""Signed per-delivery tokens (unsubscribe links, our own tracking header): the delivery id
plus a truncated HMAC, so a token can't be forged or enumerated."""
from __future__ import annotations

import base64
import hashlib
import hmac

from campaigns.settings import Secret

_MAC_BYTES = 10


def _mac(secret: Secret, purpose: str, delivery_id: int) -> bytes:
    msg = f"{purpose}:{delivery_id}".encode()
    return hmac.new(secret.reveal().encode(), msg, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(secret: Secret, purpose: str, delivery_id: int) -> str:
    mac = base64.urlsafe_b64encode(_mac(secret, purpose, delivery_id)).rstrip(b"=").decode()
    return f"{delivery_id}.{mac}"


def read_token(secret: Secret, purpose: str, token: str) -> int | None:
    """The delivery id when the token is genuine, else None."""
    head, _, mac = token.partition(".")
    if not head.isdigit() or not mac:
        return None
    try:
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    except ValueError:
        return None
    delivery_id = int(head)
    return delivery_id if hmac.compare_digest(given, _mac(secret, purpose, delivery_id)) else None
