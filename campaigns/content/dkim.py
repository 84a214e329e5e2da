"""DKIM signatures (RFC 6376; Ed25519 by RFC 8463) on what leaves, made with dkimpy.

A message whose From domain has a [dkim."DOMAIN"] table is signed relaxed/relaxed with
rsa-sha256, and also ed25519-sha256 when the table names an Ed25519 key, over the header
fields of `SIGNED_HEADERS` that the message has. `Signer.sign` returns the bytes with the
DKIM-Signature fields on top; a message of another domain comes back unchanged.

Keys are read and checked once per process (`load_key`: the settings' check at load and the
Sender share one cache). `generate` makes the key pair of `campaigns dkim keygen` and
`txt_record` the DNS record to publish.

May import: errors, settings, headers, content.original; never the ledger or Celery."""
from __future__ import annotations

import base64
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaigns.content import original
from campaigns.errors import ConfigError, InputError
from campaigns.headers import DELIVERY_HEADER
from campaigns.settings import DkimConfig
from campaigns.settings.tables import DKIM_SELECTOR

#: the header fields signed, each only when the message has it
SIGNED_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                  "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post", DELIVERY_HEADER)
_SIGNED = {name.lower().encode("ascii"): name.encode("ascii") for name in SIGNED_HEADERS}
RSA, ED25519 = "rsa", "ed25519"
_ALGORITHM = {RSA: b"rsa-sha256", ED25519: b"ed25519-sha256"}
#: PKCS#8 DER of an Ed25519 private key is this prefix and the 32-byte seed (RFC 8410)
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
_EXTRA = "pip install 'campaigns[dkim]'"

log = logging.getLogger(__name__)

#: (path, mtime, size) -> the key as dkimpy takes it: read and checked once per process
_KEYS: dict[tuple[str, int, int], bytes] = {}


def load_key(path: Path, kind: str, at: str) -> bytes:
    """The private key in `path` as dkimpy signs with it (RSA: the PEM; Ed25519: the base64
    seed), read and checked on first use in this process. ConfigError naming `at` when the
    file is missing, unreadable or not a key of `kind`."""
    try:
        st = path.stat()
        cache_key = (str(path), st.st_mtime_ns, st.st_size)
        if cache_key in _KEYS:
            return _KEYS[cache_key]
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{at}: no such file {path} (make one with `campaigns dkim keygen`)"
                          ) from None
    except OSError as err:
        raise ConfigError(f"{at}: cannot read {path}: {err.strerror}") from None
    key = _rsa_key(raw, path, at) if kind == RSA else _ed25519_key(raw, path, at)
    _KEYS[cache_key] = key
    return key


def check_key(path: Path, kind: str, at: str) -> None:
    """The settings' check of a [dkim] key file at load (`campaigns.settings.hooks`)."""
    load_key(path, kind, at)


def _rsa_key(raw: bytes, path: Path, at: str) -> bytes:
    pem = raw.replace(b"\r\n", b"\n").strip() + b"\n"
    if b"ENCRYPTED" in pem:
        raise ConfigError(f"{at}: {path} is encrypted with a passphrase: give an unencrypted "
                          "key (mode 0600)")
    crypto = _dkimpy().crypto
    try:
        key = crypto.parse_pem_private_key(pem)
    except (crypto.UnparsableKeyError, ValueError, IndexError) as err:
        raise ConfigError(f"{at}: {path} is not an RSA private key in PEM (PKCS#1 or "
                          f"PKCS#8): {str(err).splitlines()[0]}") from None
    bits = key["modulus"].bit_length()
    if bits < 1024:
        raise ConfigError(f"{at}: {path} is a {bits}-bit RSA key; receivers refuse keys under "
                          "1024 bits (make a 2048-bit one with `campaigns dkim keygen`)")
    return pem


def _ed25519_key(raw: bytes, path: Path, at: str) -> bytes:
    """PEM (PKCS#8, as keygen and openssl write it) or dkimpy's base64 seed."""
    text = raw.decode("ascii", "replace").strip()
    try:
        if text.startswith("-----BEGIN PRIVATE KEY-----"):
            der = base64.b64decode("".join(text.splitlines()[1:-1]), validate=True)
            if len(der) != 48 or not der.startswith(_ED25519_PKCS8):
                raise ValueError("not an Ed25519 key")
            seed = der[16:]
        else:
            seed = base64.b64decode(text, validate=True)
            if len(seed) != 32:
                raise ValueError(f"{len(seed)} bytes, expected a 32-byte seed")
    except ValueError as err:
        raise ConfigError(f"{at}: {path} is not an Ed25519 private key (PKCS#8 PEM or a "
                          f"base64 seed): {err}") from None
    try:
        import nacl.signing  # noqa: F401 - dkimpy signs Ed25519 with PyNaCl
    except ImportError:
        raise ConfigError(f"{at}: Ed25519 signing needs PyNaCl: {_EXTRA}") from None
    return base64.b64encode(seed)


@dataclass(frozen=True, slots=True)
class _Key:
    selector: bytes
    algorithm: bytes
    private: bytes


class Signer:
    """Signs each message whose From domain has a [dkim] table. Keys are loaded on the
    first message of their domain, once per process."""

    def __init__(self, tables: dict[str, DkimConfig]) -> None:
        self._tables = tables
        self._keys: dict[str, tuple[_Key, ...]] = {}
        if tables and not openssl():
            log.warning("DKIM: cryptography is not installed; RSA signatures are made in "
                        "pure Python (about 15 ms a message): %s", _EXTRA)

    def __bool__(self) -> bool:
        return bool(self._tables)

    def _keys_of(self, domain: str) -> tuple[_Key, ...]:
        keys = self._keys.get(domain)
        if keys is None:
            table, at = self._tables[domain], f'[dkim."{domain}"]'
            pairs = [(table.selector, RSA, table.key_file)]
            if table.ed25519_selector and table.ed25519_key_file:
                pairs.append((table.ed25519_selector, ED25519, table.ed25519_key_file))
            keys = self._keys[domain] = tuple(
                _Key(selector.encode("ascii"), _ALGORITHM[kind], load_key(path, kind, at))
                for selector, kind, path in pairs)
        return keys

    def sign(self, data: bytes) -> bytes:
        """`data` with its DKIM-Signature fields on top (RSA's, then Ed25519's), or
        unchanged when its From domain has no [dkim] table. InputError when dkimpy cannot
        sign it (a malformed header)."""
        domain = from_domain(data)
        if domain is None or domain not in self._tables:
            return data
        linesep = b"\r\n" if b"\r\n" in data[:data.find(b"\n") + 1] else b"\n"
        dkim = _dkimpy()
        signer = dkim.DKIM(data, linesep=linesep)
        include = [_SIGNED[name.lower()] for name, _ in signer.headers
                   if name.lower() in _SIGNED]
        include = list(dict.fromkeys(include))   # once each: h= names a field, not a count
        fields = []
        try:
            d = domain.encode("idna")
            for key in self._keys_of(domain):
                fields.append(signer.sign(key.selector, d, key.private,
                                          signature_algorithm=key.algorithm,
                                          canonicalize=(b"relaxed", b"relaxed"),
                                          include_headers=include))
        except (dkim.DKIMException, UnicodeError) as err:
            raise InputError(f"DKIM signing for {domain} failed: {err}") from None
        return b"".join(fields) + data


def from_domain(data: bytes) -> str | None:
    """The lower-cased domain of the (first) From address in the header of `data`."""
    found = [addr for addr in original.addresses(data, "from") if "@" in addr]
    return found[0].rpartition("@")[2].lower().rstrip(".") if found else None


# --- dkimpy, and the RSA operation by OpenSSL --------------------------------------------
# dkimpy is imported on first use: its import takes about 70 ms (it pulls in dnspython and
# aiodns), which a process that signs nothing should not pay.
# dkimpy canonicalizes, hashes and writes the header, then signs the digest with Python's
# pow() on 1024-bit halves: about 6 ms of CPU a message here (15 ms under load), which would
# cap a worker near 150 messages/s. When `cryptography` is installed (extra "dkim") the same
# RSASSA-PKCS1-v1_5 signature (deterministic: byte for byte the one dkimpy makes, see
# tests/test_dkim.py) is made by OpenSSL instead, and the PEM is parsed once, not per message.
# dkimpy looks both functions up in its module's globals when it signs; only those two
# names of `dkim` are replaced: its verifier and `dkim.crypto` are untouched.
_dkim: Any = None
_openssl = False


def _dkimpy() -> Any:
    """The `dkim` module, imported (and its RSA operation handed to OpenSSL) on first use."""
    global _dkim, _openssl
    if _dkim is None:
        import dkim
        import dkim.crypto   # noqa: F401 - parse_pem_private_key, UnparsableKeyError
        _openssl = _use_openssl(dkim)
        _dkim = dkim
    return _dkim


def openssl() -> bool:
    """Whether RSA signatures are made by OpenSSL (cryptography installed)."""
    _dkimpy()
    return _openssl


def _use_openssl(dkim: Any) -> bool:
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
    except ImportError:
        return False
    pure_sign, pure_parse = dkim.RSASSA_PKCS1_v1_5_sign, dkim.parse_pem_private_key
    openssl_keys: dict[int, Any] = {}

    def sign(digest: Any, pk: dict[str, int]) -> bytes:
        if digest.name != "sha256":
            return bytes(pure_sign(digest, pk))
        key = openssl_keys.get(pk["modulus"])
        if key is None:
            public = rsa.RSAPublicNumbers(pk["publicExponent"], pk["modulus"])
            key = openssl_keys[pk["modulus"]] = rsa.RSAPrivateNumbers(
                pk["prime1"], pk["prime2"], pk["privateExponent"], pk["exponent1"],
                pk["exponent2"], pk["coefficient"], public).private_key()
        return bytes(key.sign(digest.digest(), padding.PKCS1v15(),
                              utils.Prehashed(hashes.SHA256())))

    dkim.RSASSA_PKCS1_v1_5_sign = sign
    dkim.parse_pem_private_key = functools.lru_cache(maxsize=64)(pure_parse)
    return True


# --- keys and DNS records: `campaigns dkim keygen` ------------------------------------------

@dataclass(frozen=True, slots=True)
class NewKey:
    kind: str          # rsa | ed25519
    selector: str
    path: Path
    public: str        # the p= value (base64)


def valid_selector(selector: str) -> bool:
    return DKIM_SELECTOR.fullmatch(selector) is not None


def generate(kind: str, selector: str, path: Path, *, force: bool = False) -> NewKey:
    """A new private key of `kind` (RSA: 2048 bits) written to `path`, mode 0600 (its folder
    made 0700 when missing); InputError when `path` exists and not `force`."""
    try:
        from cryptography.hazmat.primitives import serialization as ser
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    except ImportError:
        raise ConfigError(f"making DKIM keys needs cryptography: {_EXTRA}") from None
    key: Any
    if kind == RSA:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL,
                                ser.NoEncryption())
        public = key.public_key().public_bytes(ser.Encoding.DER,
                                               ser.PublicFormat.SubjectPublicKeyInfo)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
        public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    _write_private(path, pem, force)
    return NewKey(kind, selector, path, base64.b64encode(public).decode("ascii"))


def _write_private(path: Path, data: bytes, force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"{path} exists: not replaced (give --force to replace it; the DNS "
                         "record must then change too)")
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def txt_record(domain: str, key: NewKey) -> tuple[str, str, list[str]]:
    """(the record's name, its value, the value cut into the strings of at most 255
    characters a DNS TXT record is made of)."""
    value = f"v=DKIM1; k={key.kind}; p={key.public}"
    return (f"{key.selector}._domainkey.{domain}", value,
            [value[i:i + 255] for i in range(0, len(value), 255)])
