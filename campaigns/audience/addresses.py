"""The stored form of an address (`normalise_address`), and its fast path for imports.

email-validator costs about 75 µs an address, most of it in the domain's IDNA processing: a
million-row import would spend over a minute there. The common address, an ASCII dot-atom
before the `@` and a domain seen before, takes a fast path: the local part is checked with
email-validator's own dot-atom rule, the domain is validated once (the full
`validate_email` on `a@DOMAIN`, cached) and reused. Anything else (quotes, Unicode, display
names, a domain that is not valid or that IDNA rewrites, very long addresses) goes through
the full `validate_email`, which gives the error messages. `tests/test_import_speed.py`
checks that both paths agree."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import email_validator

# RFC 5322 atext in dot-atom form: email-validator's DOT_ATOM_TEXT for an ASCII local part
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_resolver: Any = None  # email-validator's caching DNS resolver, made on first DNS check


def normalise_address(raw: str, *, check_dns: bool = False) -> str:
    """The stored form of an address: validated, email-validator-normalised, lowercased.

    Surrounding whitespace is ignored. Raises ValueError with email-validator's reason
    (e.g. "An email address must have an @-sign."). Special-use domains (localhost, .local,
    .invalid, ...) are refused, except the reserved testing TLD `.test` (RFC 6761), used by
    demos and tests against a local SMTP server; it never resolves, so with `check_dns`,
    where the domain must also accept mail (MX or A record; answers cached), it is refused."""
    text = raw.strip()
    if not text:
        raise ValueError("The email address is empty.")
    if not check_dns:
        local, at, domain = text.rpartition("@")
        if at and len(text) <= 250 and _LOCAL.match(local) and _domain(domain):
            return text.lower()
    return _full(text, check_dns)


def _full(text: str, check_dns: bool) -> str:
    try:
        if check_dns:
            result = email_validator.validate_email(
                text, check_deliverability=True, dns_resolver=_dns_resolver())
        else:
            result = email_validator.validate_email(text, check_deliverability=False,
                                                    test_environment=True)
    except email_validator.EmailNotValidError as err:
        raise ValueError(str(err)) from err
    return str(result.normalized).lower()


@lru_cache(maxsize=1 << 16)
def _domain(domain: str) -> bool:
    """True when `domain` is valid and its normalised form is itself, lowercased (plain
    ASCII that IDNA leaves alone): then an address at it is normalised by lowercasing."""
    if not domain.isascii():
        return False
    try:
        normal = _full("a@" + domain, False)
    except ValueError:
        return False
    return normal == "a@" + domain.lower()


def _dns_resolver() -> Any:
    global _resolver
    if _resolver is None:
        _resolver = email_validator.caching_resolver(timeout=10)
    return _resolver
