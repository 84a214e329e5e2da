"""Signed per-delivery tokens (unsubscribe links, our own tracking header, the VERP return
path): the delivery id plus a truncated HMAC, so a token can't be forged or enumerated. No
token carries an address."""
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


def _b32mac(secret: Secret, purpose: str, delivery_id: int) -> str:
    """The MAC in base32, lower case: MTAs and people may change the case of a local part."""
    return base64.b32encode(_mac(secret, purpose, delivery_id)).decode().rstrip("=").lower()


def make_unsubscribe_token(secret: Secret, delivery_id: int) -> str:
    """The token of one delivery's unsubscribe link and address (`/u/TOKEN`,
    `unsubscribe+TOKEN@bounce-domain`): ``123.k3j…`` (lower-case base32, so it survives a
    mail server changing the case of a local part; a dot, so it is a valid one)."""
    return f"{delivery_id}.{_b32mac(secret, 'unsubscribe', delivery_id)}"


def _read_b32(secret: Secret, purpose: str, token: str) -> int | None:
    """The delivery id of a genuine ``ID.MAC`` token with a base32 MAC (any case), else None."""
    head, _, mac = token.strip().partition(".")
    if not (head.isascii() and head.isdigit()) or len(head) > 18 or not mac:
        return None
    delivery_id = int(head)
    want = _b32mac(secret, purpose, delivery_id)
    return delivery_id if hmac.compare_digest(mac.lower().encode(), want.encode()) else None


def _read_plus_address(secret: Secret, purpose: str, address: str, local_part: str,
                       domain: str) -> int | None:
    """The delivery id of a genuine ``LOCAL+ID.MAC@domain`` of ours, else None."""
    local, _, dom = address.strip().strip("<>").rpartition("@")
    prefix = local_part.lower() + "+"
    if dom.lower() != domain.lower() or not local.lower().startswith(prefix):
        return None
    return _read_b32(secret, purpose, local[len(prefix):])


def read_unsubscribe_token(secret: Secret, token: str) -> int | None:
    """The delivery id of a genuine unsubscribe token (any case), else None."""
    return _read_b32(secret, "unsubscribe", token)


def read_unsubscribe_address(secret: Secret, address: str, domain: str) -> int | None:
    """The delivery id of a genuine ``unsubscribe+TOKEN@domain`` of ours, else None."""
    return _read_plus_address(secret, "unsubscribe", address, UNSUBSCRIBE_LOCAL_PART, domain)


#: the local part of the mailto: unsubscribe address at the bounce domain
UNSUBSCRIBE_LOCAL_PART = "unsubscribe"


def make_return_path(secret: Secret, delivery_id: int, local_part: str, domain: str) -> str:
    """The VERP envelope sender of one delivery: ``bounces+123.k3j…@bounces.example.it``.
    The MAC is base32 in lower case: MTAs may change the case of a local part."""
    return f"{local_part}+{delivery_id}.{_b32mac(secret, 'bounce', delivery_id)}@{domain}"


def read_return_path(secret: Secret, address: str, local_part: str, domain: str) -> int | None:
    """The delivery id of a genuine VERP address of ours, else None (forged, or not ours)."""
    return _read_plus_address(secret, "bounce", address, local_part, domain)
